"""The back office's webhook pages: owners only; add (the secret shown once), the attempts log,
disable/enable, rotate, redeliver, delete — each through one service, audited; zh-hans and en."""
from __future__ import annotations

import pytest
from django.utils import translation

from kami.audit.models import AuditLog
from kami.delivery.worker import run_once
from kami.webhooks.models import Endpoint
from tests.backoffice.staffing import admin_url, signed_in

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.mark.parametrize("role", ["operator", "support"])
def test_only_owners_manage_webhooks(role):
    client = signed_in(role, f"{role}-w")
    assert admin_url("webhooks/") not in client.get(admin_url()).content.decode()
    assert client.get(admin_url("webhooks/")).status_code == 403
    assert client.post(admin_url("webhooks/"), {"url": "https://x.example/k", "events": ["order.paid"]}).status_code == 403
    assert Endpoint.objects.count() == 0


def test_add_shows_the_secret_once_then_the_log_and_the_actions(receiver, pay):
    # given
    client = signed_in("owner", "owner-w")
    assert admin_url("webhooks/") in client.get(admin_url()).content.decode()  # linked from the index
    # when: added through the form
    page = client.post(admin_url("webhooks/"), {"url": receiver.url, "events": ["order.paid", "order.fulfilled"],
                                                 "description": "ERP"})
    # then: the secret is on that page, and never again
    assert page.status_code == 200
    html = page.content.decode()
    secret = html.split('<code id="webhook-secret">')[1].split("</code>")[0]
    assert secret.startswith("whsec_") and page["Cache-Control"].startswith("max-age=0")
    endpoint = Endpoint.objects.get()
    detail = client.get(admin_url(f"webhooks/{endpoint.pk}/"))
    assert secret not in detail.content.decode() and secret not in client.get(admin_url("webhooks/")).content.decode()
    # when: an order's events fail once
    receiver.secrets.append(secret)
    receiver.fail_with = 500
    pay()
    run_once("test-worker")
    # then: the attempts log shows status and the answer's excerpt
    html = client.get(admin_url(f"webhooks/{endpoint.pk}/")).content.decode()
    assert "HTTP 500" in html and "receiver is having a bad day" in html and "order.paid" in html
    # when: redelivered by hand once the receiver is fixed
    receiver.fail_with = None
    message = endpoint.messages.get(event="order.paid")
    client.post(admin_url(f"webhooks/{endpoint.pk}/events/{message.pk}/redeliver/"))
    run_once("test-worker")
    assert receiver.types()[0] == "order.paid"
    # when: disabled, enabled, rotated, deleted
    client.post(admin_url(f"webhooks/{endpoint.pk}/disable/"))
    assert Endpoint.objects.get().enabled is False
    client.post(admin_url(f"webhooks/{endpoint.pk}/enable/"))
    assert Endpoint.objects.get().enabled is True
    rotated = client.post(admin_url(f"webhooks/{endpoint.pk}/rotate/")).content.decode()
    new_secret = rotated.split('<code id="webhook-secret">')[1].split("</code>")[0]
    assert new_secret.startswith("whsec_") and new_secret != secret
    client.post(admin_url(f"webhooks/{endpoint.pk}/delete/"))
    # then: all of it audited
    assert Endpoint.objects.count() == 0
    actions = list(AuditLog.objects.filter(action__startswith="webhook.").order_by("id").values_list("action", flat=True))
    assert actions == ["webhook.create", "webhook.disable", "webhook.enable", "webhook.rotate", "webhook.delete"]
    assert AuditLog.objects.filter(action="delivery.retry").count() == 1


def test_a_bad_url_is_refused_with_the_field_named():
    client = signed_in("owner", "owner-bad")
    page = client.post(admin_url("webhooks/"), {"url": "not a url", "events": ["order.paid"]}, follow=True)
    assert "url: &#x27;not a url&#x27; is not an http(s) url" in page.content.decode().lower()
    assert Endpoint.objects.count() == 0


@pytest.mark.parametrize("language,heading", [("en", "Add an endpoint"), ("zh-hans", "添加端点")])
def test_the_page_speaks_both_languages(language, heading):
    client = signed_in("owner", f"owner-{language}")
    with translation.override(language):
        page = client.get(admin_url("webhooks/"), HTTP_ACCEPT_LANGUAGE=language)
    assert heading in page.content.decode()
