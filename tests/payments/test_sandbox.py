"""Hostile notifications to the sandbox gateway: it is a demo, but it verifies like a real one."""
from __future__ import annotations

import hashlib
import hmac
import json
import time
from datetime import timedelta

import pytest

from kami.core import clock
from kami.delivery.models import OutboxMessage
from kami.orders.models import Order
from kami.payments.models import GatewayAccount
from kami.payments.registry import secrets_encrypt
from tests.payments.epay_play import add_keys, create_order, last_notification, nothing_delivered, stored_text
from tests.sandbox_play import enable_sandbox, sandbox_notify

pytestmark = pytest.mark.django_db(transaction=True)


def sandbox_order(client, make_product, keys: int = 2) -> dict:
    item = make_product()
    add_keys(item, [f"SBX-{item.slug}-{i}" for i in range(keys)])
    return create_order(client, item, gateway="sandbox")


def refused(response, *, error: str):
    assert (response.status_code, response.content) == (400, b"fail")
    row = last_notification()
    assert (row.result, row.verified) == ("rejected", False)
    assert error in row.error
    assert nothing_delivered()
    return row


def test_a_paid_notification_fulfils(client, make_product):
    enable_sandbox()
    order = sandbox_order(client, make_product)
    response = sandbox_notify(client, order_no=order["order_no"], amount=order["amount"])
    assert (response.status_code, response.content) == (200, b"ok")
    assert Order.objects.get(order_no=order["order_no"]).status == "fulfilled"


def test_bad_signature_is_refused(client, make_product):
    enable_sandbox()
    order = sandbox_order(client, make_product)
    response = sandbox_notify(client, order_no=order["order_no"], amount=order["amount"], signature="0" * 64)
    refused(response, error="bad signature")


def test_no_signature_is_refused(client, make_product):
    enable_sandbox()
    order = sandbox_order(client, make_product)
    refused(sandbox_notify(client, order_no=order["order_no"], amount=order["amount"], signature=""), error="bad signature")


@pytest.mark.parametrize("age", [301, -301, 86400])
def test_a_timestamp_outside_five_minutes_is_refused(client, make_product, age):
    # given: correctly signed, but stamped more than five minutes ago (or ahead)
    enable_sandbox()
    order = sandbox_order(client, make_product)
    # when
    response = sandbox_notify(client, order_no=order["order_no"], amount=order["amount"], timestamp=int(time.time()) - age)
    # then
    refused(response, error="5-minute window")


def test_the_window_is_the_shop_s_clock_not_the_system_s(client, make_product):
    # given: two notifications stamped by the system clock, now and ten minutes ahead of it
    enable_sandbox()
    first, second = sandbox_order(client, make_product), sandbox_order(client, make_product)
    now = int(time.time())
    try:
        # when: kami.core.clock is moved ten minutes ahead
        clock.travel(timedelta(minutes=10))
        stale = sandbox_notify(client, order_no=first["order_no"], amount=first["amount"], timestamp=now)
        fresh = sandbox_notify(client, order_no=second["order_no"], amount=second["amount"], timestamp=now + 600)
    finally:
        clock.travel(None)
    # then: the window followed the shop's clock
    assert (stale.status_code, fresh.status_code) == (400, 200)
    assert Order.objects.get(order_no=second["order_no"]).status == "fulfilled"
    assert Order.objects.get(order_no=first["order_no"]).status == "pending"


@pytest.mark.parametrize("stored", [{"secret": ""}, {}], ids=["empty-secret", "no-secret"])
def test_an_empty_secret_refuses_everything(client, make_product, stored):
    # given: the secret was emptied in the database; a forger signs with the empty secret
    enable_sandbox()
    order = sandbox_order(client, make_product)
    account = GatewayAccount.objects.get(name="sandbox")
    account.secrets_key_id, account.secrets_ciphertext = secrets_encrypt("sandbox", stored)
    account.save()
    body = json.dumps({"order_no": order["order_no"], "trade_no": "T-1", "amount": order["amount"], "currency": "CNY",
                       "status": "paid", "timestamp": int(time.time())}).encode()
    forged = hmac.new(b"", body, hashlib.sha256).hexdigest()
    # when
    response = client.post("/pay/sandbox/notify", data=body, content_type="application/json",
                           HTTP_X_SANDBOX_SIGNATURE=forged)
    # then
    refused(response, error="secret is empty")


def test_wrong_amount_is_flagged(client, make_product):
    enable_sandbox()
    order = sandbox_order(client, make_product)
    response = sandbox_notify(client, order_no=order["order_no"], amount="0.01")
    assert response.content == b"ok"
    row = Order.objects.get(order_no=order["order_no"])
    assert (row.status, row.flag_reason) == ("flagged", "amount_mismatch")
    assert OutboxMessage.objects.filter(kind="admin_alert", payload__event="flagged").count() == 1
    assert nothing_delivered()


def test_wrong_currency_is_flagged(client, make_product):
    enable_sandbox()
    order = sandbox_order(client, make_product)
    response = sandbox_notify(client, order_no=order["order_no"], amount=order["amount"], currency="USD")
    assert response.content == b"ok"
    assert Order.objects.get(order_no=order["order_no"]).status == "flagged"
    assert nothing_delivered()


def test_a_body_replayed_with_another_order_number_is_refused(client, make_product):
    # given: A's signed notification, captured; B is an order of the same amount
    gw = enable_sandbox()
    a = sandbox_order(client, make_product)
    b = sandbox_order(client, make_product)
    body = gw.notification_body(order_no=a["order_no"], trade_no="T-A", amount=a["amount"], currency="CNY")
    signature = gw.sign(body)
    # when: A's number is swapped for B's, A's signature kept
    tampered = body.replace(a["order_no"].encode(), b["order_no"].encode())
    response = client.post("/pay/sandbox/notify", data=tampered, content_type="application/json",
                           HTTP_X_SANDBOX_SIGNATURE=signature)
    # then
    refused(response, error="bad signature")
    assert Order.objects.get(order_no=b["order_no"]).status == "pending"


@pytest.mark.parametrize("status", ["pending", "failed", "refunded", "PAID"])
def test_a_status_other_than_paid_changes_nothing(client, make_product, status):
    enable_sandbox()
    order = sandbox_order(client, make_product)
    response = sandbox_notify(client, order_no=order["order_no"], amount=order["amount"], status=status)
    assert response.content == b"ok"
    assert (last_notification().result, last_notification().verified) == ("ignored", True)
    assert Order.objects.get(order_no=order["order_no"]).status == "pending"
    assert nothing_delivered()


@pytest.mark.parametrize("change", [{"amount": 29.9}, {"amount": ["29.90"]}, {"amount": "NaN"}, {"order_no": 1},
                                    {"timestamp": "now"}, {"order_no": "\u0000"}, {"trade_no": "x" * 200}])
def test_signed_but_malformed_bodies_are_refused(client, make_product, change):
    # given: signed with the real secret, so only the shape checks can stop it
    gw = enable_sandbox()
    order = sandbox_order(client, make_product)
    data = {"order_no": order["order_no"], "trade_no": "T-1", "amount": order["amount"], "currency": "CNY",
            "status": "paid", "timestamp": int(time.time()), **change}
    body = json.dumps(data).encode()
    # when
    response = client.post("/pay/sandbox/notify", data=body, content_type="application/json",
                           HTTP_X_SANDBOX_SIGNATURE=gw.sign(body))
    # then
    row = refused(response, error="malformed")
    assert gw.secrets["secret"] not in stored_text(row)


def test_the_secret_is_never_stored_with_a_notification(client, make_product):
    gw = enable_sandbox()
    order = sandbox_order(client, make_product)
    sandbox_notify(client, order_no=order["order_no"], amount=order["amount"])
    assert gw.secrets["secret"] not in stored_text(last_notification())


def test_a_disabled_sandbox_answers_404_and_keeps_nothing(client):
    response = client.post("/pay/sandbox/notify", data=b"{}", content_type="application/json")
    assert response.status_code == 404
    assert last_notification() is None
