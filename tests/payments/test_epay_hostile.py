"""Epay notifications that must not deliver anything: forged, replayed, tampered, malformed.

Each one is kept as a Notification row with the right result (and never the merchant key),
answered so that the site retries what might be real and nothing is delivered.
"""
from __future__ import annotations

from urllib.parse import urlencode

import pytest

from kami.core.errors import BadInput
from kami.delivery.models import OutboxMessage
from kami.orders.models import Order
from kami.payments.gateways.epay import epay_sign
from kami.payments.models import GatewayAccount, Notification
from kami.payments.registry import secrets_encrypt
from kami.payments.services import gateway_configure
from tests.payments.epay_play import (KEY, PID, enable_epay, last_notification, notify, nothing_delivered,
                                      paid_params, stocked_order, stored_text)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("key_never_stored")]


def refused(response, *, error: str = "") -> Notification:
    """The common verdict: `fail` with 400, a stored rejected row naming why, no key stored, nothing delivered."""
    assert (response.status_code, response.content) == (400, b"fail")
    row = last_notification()
    assert (row.result, row.verified) == ("rejected", False)
    assert error in row.error
    assert KEY not in stored_text(row)
    assert nothing_delivered()
    return row


def force_key(value: str | None) -> None:
    """Store the epay secrets as an older install or a hand-edited database might have them
    (the configure service refuses to leave an enabled gateway without its key)."""
    account = GatewayAccount.objects.get(name="epay")
    account.secrets_key_id, account.secrets_ciphertext = secrets_encrypt("epay", {} if value is None else {"key": value})
    account.save()


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_bad_signature_is_refused(client, make_product, method):
    # given
    enable_epay()
    order = stocked_order(client, make_product)
    params = paid_params(order_no=order["order_no"], money=order["amount"], key="not-the-merchant-key")
    # when
    response = notify(client, params, method=method)
    # then
    refused(response, error="bad signature")
    assert Order.objects.get(order_no=order["order_no"]).status == "pending"


def test_missing_signature_is_refused(client, make_product):
    enable_epay()
    order = stocked_order(client, make_product)
    params = paid_params(order_no=order["order_no"], money=order["amount"])
    del params["sign"]
    refused(notify(client, params), error="bad signature")


def test_signature_compared_case_insensitively_but_exactly(client, make_product):
    # given: the same signature in upper case (some PHP forks send it so) is the same signature
    enable_epay()
    order = stocked_order(client, make_product)
    params = paid_params(order_no=order["order_no"], money=order["amount"])
    # when
    response = notify(client, {**params, "sign": params["sign"].upper()})
    # then
    assert response.content == b"success"


@pytest.mark.parametrize("stored", ["", "   ", None], ids=["empty-key", "blank-key", "missing-key"])
def test_no_configured_key_refuses_everything_even_when_signed_with_nothing(client, make_product, stored):
    # given: the gateway is enabled but its key is empty or absent
    enable_epay()
    order = stocked_order(client, make_product)
    force_key(stored)
    # when: a forger signs with the empty key, and also with no sign at all
    forged = paid_params(order_no=order["order_no"], money=order["amount"], key=stored or "")
    unsigned = {k: v for k, v in forged.items() if k != "sign"}
    first, second = notify(client, forged), notify(client, unsigned)
    # then
    refused(first, error="key is empty")
    refused(second, error="key is empty")
    assert Order.objects.get(order_no=order["order_no"]).status == "pending"


def test_an_empty_key_cannot_be_stored_on_an_enabled_gateway(db):
    # given
    enable_epay()
    # when / then
    with pytest.raises(BadInput, match="key"):
        gateway_configure(name="epay", values={"key": ""}, actor="test")


def test_another_merchants_pid_is_refused_even_when_correctly_signed(client, make_product):
    # given: a notification signed with our key but naming another merchant id
    enable_epay()
    order = stocked_order(client, make_product)
    # when
    response = notify(client, paid_params(order_no=order["order_no"], money=order["amount"], pid="2002"))
    # then
    refused(response, error="pid")


def test_wrong_amount_is_flagged_with_an_alert_and_nothing_delivered(client, make_product):
    # given
    enable_epay()
    order = stocked_order(client, make_product)
    # when: a real, signed payment of one cent for a 29.90 order
    response = notify(client, paid_params(order_no=order["order_no"], money="0.01"))
    # then: acknowledged (it is a real payment, a human decides), flagged, alerted
    assert response.content == b"success"
    row = Order.objects.get(order_no=order["order_no"])
    assert (row.status, row.flag_reason) == ("flagged", "amount_mismatch")
    assert last_notification().result == "flagged"
    assert OutboxMessage.objects.filter(kind="admin_alert", payload__event="flagged").count() == 1
    assert KEY not in stored_text(last_notification())
    assert nothing_delivered()


def test_wrong_currency_is_flagged(client, make_product):
    # given: an order in CNY, then the merchant switches the Epay site's currency to USD
    enable_epay()
    order = stocked_order(client, make_product)
    gateway_configure(name="epay", values={"currency": "USD"}, actor="test")
    # when: the site reports the same figure, now meaning dollars
    response = notify(client, paid_params(order_no=order["order_no"], money=order["amount"]))
    # then
    assert response.content == b"success"
    row = Order.objects.get(order_no=order["order_no"])
    assert (row.status, row.flag_reason) == ("flagged", "amount_mismatch")
    assert "USD" in OutboxMessage.objects.get(kind="admin_alert").payload["body"]
    assert nothing_delivered()


def test_an_epay_order_cannot_be_created_in_a_currency_the_site_does_not_charge(client, make_product):
    # given
    enable_epay(currency="USD")
    item = make_product()  # priced in CNY
    # when
    response = client.post("/api/v1/orders", {"product": item.slug, "quantity": 1, "email": "b@example.com",
                                              "gateway": "epay"}, content_type="application/json")
    # then
    assert response.status_code == 400
    assert "CNY" in response.json()["fields"]["gateway"]


def test_unknown_order_is_recorded_and_acknowledged(client, make_product):
    # given: a signed notification for an order this shop never created (a shared merchant id)
    enable_epay()
    stocked_order(client, make_product)
    # when
    response = notify(client, paid_params(order_no="999999999999999999", money="29.90"))
    # then
    assert response.content == b"success"
    assert (last_notification().result, last_notification().order_no) == ("unknown_order", "999999999999999999")
    assert nothing_delivered()


def test_a_valid_notification_replayed_onto_another_order_is_refused(client, make_product):
    # given: orders A and B of the same amount; A's notification was captured in transit
    enable_epay()
    a = stocked_order(client, make_product, keys=2)
    b = stocked_order(client, make_product, keys=2)
    captured = paid_params(order_no=a["order_no"], money=a["amount"])
    # when: the attacker swaps in B's number and keeps A's signature
    response = notify(client, {**captured, "out_trade_no": b["order_no"]})
    # then
    refused(response, error="bad signature")
    assert Order.objects.get(order_no=b["order_no"]).status == "pending"


def test_the_same_trade_replayed_for_another_order_delivers_nothing_more(client, make_product):
    # given: A is paid; then B's notification arrives reusing A's trade number (validly signed)
    enable_epay()
    a = stocked_order(client, make_product, keys=2)
    b = stocked_order(client, make_product, keys=2)
    notify(client, paid_params(order_no=a["order_no"], money=a["amount"], trade_no="T-SAME"))
    # when
    response = notify(client, paid_params(order_no=b["order_no"], money=b["amount"], trade_no="T-SAME"))
    # then: a trade is applied at most once
    assert response.content == b"success"
    assert last_notification().result == "duplicate"
    assert Order.objects.get(order_no=b["order_no"]).status == "pending"


def test_amount_sent_as_a_php_array_is_refused(client, make_product):
    # given: money[]= (PHP reads an array), even signed over the field as sent
    enable_epay()
    order = stocked_order(client, make_product)
    params = paid_params(order_no=order["order_no"], money=order["amount"])
    del params["money"], params["sign"]
    params["money[]"] = order["amount"]
    params["sign"] = epay_sign(params, KEY)
    # when
    response = notify(client, params, method="POST")
    # then
    refused(response, error="array")


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_amount_sent_twice_is_refused(client, make_product, method):
    # given: money=29.90 signed, then money=0.01 appended (whichever a parser picks, refuse both)
    enable_epay()
    order = stocked_order(client, make_product)
    params = paid_params(order_no=order["order_no"], money=order["amount"])
    # when
    response = notify(client, urlencode(params) + "&money=0.01", method=method)
    # then
    row = refused(response, error="more than once")
    assert '"money": ["29.90", "0.01"]' in row.body  # the stored row shows both values


def test_a_field_in_both_the_query_and_the_form_is_refused(client, make_product):
    enable_epay()
    order = stocked_order(client, make_product)
    params = paid_params(order_no=order["order_no"], money=order["amount"])
    response = client.post("/pay/epay/notify?money=0.01", data=urlencode(params),
                           content_type="application/x-www-form-urlencoded")
    refused(response, error="more than once")


def test_unsupported_sign_type_is_refused(client, make_product):
    enable_epay()
    order = stocked_order(client, make_product)
    params = {**paid_params(order_no=order["order_no"], money=order["amount"]), "sign_type": "RSA"}
    refused(notify(client, params), error="sign_type")


def test_waiting_for_payment_is_acknowledged_and_delivers_nothing(client, make_product):
    # given
    enable_epay()
    order = stocked_order(client, make_product)
    # when
    response = notify(client, paid_params(order_no=order["order_no"], money=order["amount"], status="WAIT_BUYER_PAY"))
    # then
    assert response.content == b"success"
    assert (last_notification().result, last_notification().verified) == ("ignored", True)
    assert Order.objects.get(order_no=order["order_no"]).status == "pending"
    assert nothing_delivered()


@pytest.mark.parametrize("money", ["1e1", "NaN", "29,90", "", " ", "-29.90x", "0x1d"])
def test_malformed_amounts_are_refused(client, make_product, money):
    # given: signed, so only the amount check can stop it
    enable_epay()
    order = stocked_order(client, make_product)
    params = paid_params(order_no=order["order_no"], money=money)
    # when / then
    refused(notify(client, params), error="money")


@pytest.mark.parametrize("order_no, trade_no", [("A" * 65, "T-1"), ("", "T\x00"), ("", "x" * 129)],
                         ids=["long-order-no", "nul-in-trade-no", "long-trade-no"])
def test_identifiers_the_database_cannot_hold_are_refused(client, make_product, order_no, trade_no):
    # given: signed, so only the shape check can stop it
    enable_epay()
    order = stocked_order(client, make_product)
    params = paid_params(order_no=order_no or order["order_no"], money=order["amount"], trade_no=trade_no)
    # when / then
    row = refused(notify(client, params, method="POST"), error="printable text")
    assert "\x00" not in row.body


@pytest.mark.parametrize("body, content_type", [
    (b"\xff\xfe\x00\x81garbage=\xc3\x28&pid=\xa0\xa1", "application/x-www-form-urlencoded"),
    (b"\x00\x01\x02\x03\xff" * 50, "application/octet-stream"),
    (b'{"pid": "1001", "money": "29.90"}', "application/json"),
    (b"--x\r\nContent-Disposition: form-data; name=\"pid\"\r\n\r\n1001\r\n--x", "multipart/form-data; boundary=x"),
    (b"--x\r\nbroken", "multipart/form-data"),
    (b"pid=1001&money=29.90", "application/x-www-form-urlencoded; charset=gbk"),
], ids=["latin-garbage-form", "binary", "json", "truncated-multipart", "multipart-no-boundary", "form-in-gbk"])
def test_garbage_bodies_are_stored_and_refused(client, make_product, body, content_type):
    # given
    enable_epay()
    stocked_order(client, make_product)
    # when
    response = client.post("/pay/epay/notify", data=body, content_type=content_type)
    # then
    row = refused(response)
    assert "\x00" not in row.body
    assert row.method == "POST"


def test_a_non_utf8_query_string_is_refused(client, make_product):
    enable_epay()
    order = stocked_order(client, make_product)
    # given: a site that signed the name as UTF-8 text but sent it GBK-encoded (测试)
    params = paid_params(order_no=order["order_no"], money=order["amount"], name="测试")
    query = urlencode({k: v for k, v in params.items() if k != "name"}) + "&name=%B2%E2%CA%D4"
    # when
    response = client.get("/pay/epay/notify", QUERY_STRING=query)
    # then
    refused(response, error="bad signature")


def test_a_disabled_gateway_answers_404_and_keeps_nothing(client, make_product):
    enable_epay()
    order = stocked_order(client, make_product)
    gateway_configure(name="epay", values={}, enable=False, actor="test")
    response = notify(client, paid_params(order_no=order["order_no"], money=order["amount"]))
    assert response.status_code == 404
    assert not Notification.objects.exists()
    assert nothing_delivered()


def test_other_methods_are_refused_before_anything_is_stored(client, make_product):
    enable_epay()
    stocked_order(client, make_product)
    response = client.put("/pay/epay/notify", data="pid=1001", content_type="application/x-www-form-urlencoded")
    assert response.status_code == 405
    assert not Notification.objects.exists()


def test_a_key_field_sent_by_anyone_is_not_stored(client, make_product):
    # given: a notification that carries the merchant key itself (a misconfigured proxy, a probe)
    enable_epay()
    order = stocked_order(client, make_product)
    params = {**paid_params(order_no=order["order_no"], money=order["amount"], pid=PID), "key": KEY}
    # when
    notify(client, params)
    # then
    row = last_notification()
    assert KEY not in stored_text(row)
    assert '"key": "[redacted]"' in row.body



@pytest.mark.parametrize("money", ["-29.90", "0", "29.91", "999999999999.99"])
def test_a_different_amount_is_flagged_on_every_engine(client, make_product, money):
    # given
    enable_epay()
    order = stocked_order(client, make_product)
    # when
    response = notify(client, paid_params(order_no=order["order_no"], money=money))
    # then
    assert response.content == b"success"
    assert Order.objects.get(order_no=order["order_no"]).flag_reason == "amount_mismatch"
    assert nothing_delivered()


@pytest.mark.parametrize("money", ["9" * 31, "1000000000000.00", "0.001", "29.901"])
def test_an_amount_no_price_can_have_is_refused_on_every_engine(client, make_product, money):
    # given: signed; PostgreSQL and MariaDB could not store it, SQLite would round or keep it
    enable_epay()
    order = stocked_order(client, make_product)
    # when
    response = notify(client, paid_params(order_no=order["order_no"], money=money))
    # then
    refused(response, error="not a price Kami can hold")
    assert Order.objects.get(order_no=order["order_no"]).status == "pending"


def test_an_amount_with_trailing_zeros_is_the_same_amount(client, make_product):
    enable_epay()
    order = stocked_order(client, make_product)
    response = notify(client, paid_params(order_no=order["order_no"], money="0029.900"))
    assert response.content == b"success"
    assert Order.objects.get(order_no=order["order_no"]).status == "fulfilled"
