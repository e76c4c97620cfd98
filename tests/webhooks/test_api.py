"""/api/v1/merchant/webhooks: the endpoints managed by a token with the `webhooks` scope; the secret
in the first answer only (a replay has null), events validated, attempts readable, redelivery."""
from __future__ import annotations

import uuid

import pytest

from kami.api.models import IdempotencyRecord
from kami.api.tokens import api_token_create
from kami.audit.models import AuditLog
from kami.delivery.worker import run_once
from kami.webhooks.models import Endpoint
from tests.api.conftest import Api

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def api():
    return Api(api_token_create(name="erp", scopes="webhooks", actor="test").secret)


def test_create_shows_the_secret_once_and_a_replay_does_not(api, receiver):
    # given
    key = uuid.uuid4().hex
    body = {"url": receiver.url, "events": ["order.fulfilled", "order.paid"], "description": "ERP"}
    # when
    first = api.post("/webhooks", body, key=key)
    again = api.post("/webhooks", body, key=key)
    # then
    assert first.status_code == 200, first.content
    data = first.json()
    assert data["secret"].startswith("whsec_") and data["events"] == ["order.paid", "order.fulfilled"]
    assert again.status_code == 200 and again.json()["secret"] is None and again.json()["id"] == data["id"]
    assert Endpoint.objects.count() == 1
    # and the secret is stored nowhere in clear
    assert data["secret"] not in str(IdempotencyRecord.objects.get().body)
    assert data["secret"].encode() not in bytes(Endpoint.objects.get().secret_ciphertext)
    assert AuditLog.objects.filter(action="webhook.create").count() == 1


def test_bad_input_names_the_field(api):
    unknown = api.post("/webhooks", {"url": "https://erp.example.com/k", "events": ["order.shipped"]})
    assert unknown.status_code == 422 and "events" in unknown.json()["detail"]
    not_http = api.post("/webhooks", {"url": "ftp://erp.example.com/k", "events": ["order.paid"]})
    assert not_http.status_code == 422 and "url" in not_http.json()["detail"]
    assert api.get("/webhooks/999").status_code == 404


def test_other_scopes_are_refused():
    reader = Api(api_token_create(name="reader", scopes="read", actor="test").secret)
    response = reader.get("/webhooks")
    assert response.status_code == 403 and "webhooks" in response.json()["detail"]


def test_change_rotate_list_messages_and_redeliver(api, receiver, pay):
    # given
    made = api.post("/webhooks", {"url": receiver.url, "events": ["order.fulfilled"]}).json()
    receiver.secrets.append(made["secret"])
    # when: disabled, then enabled with one more event
    assert api.patch(f"/webhooks/{made['id']}", {"enabled": False}).json()["enabled"] is False
    changed = api.patch(f"/webhooks/{made['id']}", {"enabled": True, "events": ["order.paid", "order.fulfilled"]})
    assert changed.json()["enabled"] is True and changed.json()["events"] == ["order.paid", "order.fulfilled"]
    # when: rotated with no overlap; only the new secret verifies
    rotated = api.post(f"/webhooks/{made['id']}/rotate", {"overlap_hours": 0}).json()
    receiver.secrets = [rotated["secret"]]
    receiver.fail_with = 500
    pay()
    run_once("test-worker")
    # then: the attempts are readable
    listed = api.get(f"/webhooks/{made['id']}/messages").json()
    paid = next(m for m in listed if m["event"] == "order.paid")
    assert paid["status"] == "failed" and paid["attempts"][0]["http_status"] == 500
    # when: redelivered now
    receiver.fail_with = None
    response = api.post(f"/webhooks/{made['id']}/messages/{paid['id']}/redeliver")
    assert response.status_code == 200 and response.json()["status"] == "pending"
    run_once("test-worker")
    assert receiver.types()[0] == "order.paid"
    # and deleted
    assert api.client.delete(f"/api/v1/merchant/webhooks/{made['id']}", **api._auth()).status_code == 204
    assert api.get("/webhooks").json() == []
