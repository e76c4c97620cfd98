"""Epusdt / BEpusdt played by a loopback fake of the instance: checkout creates a signed
transaction, signed notifications fulfil exactly once, forgeries and oddities change nothing,
and check-status answers reconciliation."""
from __future__ import annotations

import json
from dataclasses import replace
from datetime import timedelta
from decimal import Decimal

import pytest
from django.test import RequestFactory

from kami.core.edge import inbound_from, response_from
from kami.core.errors import BadInput, KamiError, Retryable, VerificationFailed
from kami.delivery.models import OutboxMessage
from kami.fulfilment.reconcile import reconcile_pending
from kami.orders.models import Order, OrderKey
from kami.payments.gateways.epusdt import EpusdtGateway, epusdt_sign, go_number
from kami.payments.interface import OrderInfo, Urls
from kami.payments.models import GatewayAccount, Notification
from kami.stock.models import Key
from tests.payments.epay_play import return_url
from tests.payments.usdt_play import (EPUSDT_TOKEN, FakeEpusdt, Num, add_keys, create_order, enable_epusdt,
                                      epusdt_notice, fixture, last_notification, nothing_delivered, payments_of,
                                      post_json, stocked_order, stored_text, to_json)

pytestmark = pytest.mark.django_db(transaction=True)
# Tests marked sqlite_only talk to the gateway's loopback fake or parse alone: the same on every engine.
GMWALLET_PATH = "/payments/epusdt/v1/order/create-transaction"
ORDER = OrderInfo(order_no="261127120012345678", amount=Decimal("29.90"), currency="CNY", subject="x",
                  email="b@example.com")


@pytest.fixture
def instance():
    site = FakeEpusdt().start()
    try:
        yield site
    finally:
        site.stop()
    assert not [row.pk for row in Notification.objects.all() if EPUSDT_TOKEN in stored_text(row)]


def gateway_for(site, *, token: str = EPUSDT_TOKEN, **config) -> EpusdtGateway:
    return EpusdtGateway(config={"url": site.url, **config}, secrets={"api_auth_token": token})


def order_for(client, make_product, instance, **kwargs) -> dict:
    enable_epusdt(instance.url)
    return stocked_order(client, make_product, gateway="epusdt", **kwargs)


def notify(client, fields: dict):
    return post_json(client, "epusdt", to_json(fields))


# -- the signature ----------------------------------------------------------------------------------

@pytest.mark.sqlite_only
def test_the_published_example_signature_is_reproduced():
    sample = fixture("epusdt_doc_example")
    assert epusdt_sign(sample["params"], sample["token"]) == sample["signature"] == "1cd4b52df5587cfb1968b0c0c6e156cd"


@pytest.mark.sqlite_only
@pytest.mark.parametrize("name, paid", [("epusdt_paid", True), ("epusdt_paid_whole", True),
                                        ("epusdt_bepusdt_waiting", False)])
def test_recorded_notifications_verify_as_sent(name, paid):
    # given: bodies signed with md5sum, not with Kami's code
    sample = fixture(name)
    request = RequestFactory().post("/pay/epusdt/notify", data=sample["body"], content_type="application/json")
    # when
    notice = EpusdtGateway(config={"url": "https://usdt.example"}, secrets={"api_auth_token": sample["token"]}) \
        .parse_notification(inbound_from(request))
    # then
    amount = Decimal(sample["price"]) * sample["quantity"]
    assert (notice.order_no, notice.trade_no, notice.amount, notice.currency, notice.paid) == (
        sample["order_no"], sample["trade_id"], amount, "CNY", paid)


@pytest.mark.sqlite_only
@pytest.mark.parametrize("amount, text", [("29.90", "29.9"), ("42.00", "42"), ("0.10", "0.1"), ("1234.56", "1234.56")])
def test_amounts_are_written_as_go_prints_them(amount, text):
    assert go_number(Decimal(amount)) == text


# -- checkout ---------------------------------------------------------------------------------------

def test_checkout_creates_a_signed_transaction_and_redirects_to_its_payment_page(client, make_product, instance):
    # when
    order = order_for(client, make_product, instance, quantity=2)
    # then: the fake checked the signature as Go does (it answered a trade, not 401)
    method, path, body = instance.requests[-1]
    sent = json.loads(body)
    assert (method, path) == ("POST", "/api/v1/order/create-transaction")
    assert b'"amount": 59.8' in body
    assert sent["order_id"] == order["order_no"] and sent["notify_url"] == "http://testserver/pay/epusdt/notify"
    assert sent["redirect_url"] == return_url(order) and EPUSDT_TOKEN not in body.decode()
    assert order["token"] not in body.decode()  # the order token never goes to a third party
    trade_id = Order.objects.get(order_no=order["order_no"]).gateway_ref
    assert order["payment"] == {"type": "redirect", "url": f"{instance.url}/pay/checkout-counter/{trade_id}"}
    assert instance.trades[trade_id]["order_id"] == order["order_no"]


def test_the_gmwallet_fork_path_is_used_when_configured(client, make_product):
    site = FakeEpusdt(create_path=GMWALLET_PATH).start()
    try:
        enable_epusdt(site.url, create_path=GMWALLET_PATH)
        order = stocked_order(client, make_product, gateway="epusdt")
    finally:
        site.stop()
    assert site.requests[-1][1] == GMWALLET_PATH
    assert order["payment"]["url"].startswith(f"{site.url}/pay/checkout-counter/")


@pytest.mark.sqlite_only
@pytest.mark.parametrize("token, mode, error, words", [
    ("wrong-token", "normal", KamiError, "api_auth_token"), (EPUSDT_TOKEN, "error500", Retryable, "HTTP 500"),
    (EPUSDT_TOKEN, "drop", Retryable, "will retry"), (EPUSDT_TOKEN, "not_json", KamiError, "without JSON"),
])
def test_a_refused_or_failed_creation_says_why(instance, token, mode, error, words):
    instance.mode = mode
    with pytest.raises(error, match=words) as caught:
        gateway_for(instance, token=token).create_payment(ORDER, Urls(notify="http://t/pay/epusdt/notify", ret="http://t/o"))
    assert token not in str(caught.value)


@pytest.mark.sqlite_only
def test_the_same_order_number_twice_is_refused_by_the_instance(instance):
    urls = Urls(notify="http://t/pay/epusdt/notify", ret="http://t/o")
    gateway_for(instance).create_payment(ORDER, urls)
    with pytest.raises(KamiError, match="already has an order"):
        gateway_for(instance).create_payment(ORDER, urls)


@pytest.mark.sqlite_only
def test_an_order_in_another_currency_is_refused(instance):
    info = OrderInfo(order_no="1", amount=Decimal("5.00"), currency="USD", subject="x", email="b@example.com")
    with pytest.raises(BadInput, match="CNY"):
        gateway_for(instance).create_payment(info, Urls(notify="http://t/n", ret="http://t/o"))


@pytest.mark.parametrize("values, complaint", [({"url": "usdt.example"}, "url"), ({"url": "https://u.example/?a=1"}, "url"),
                                               ({"create_path": "api/x"}, "create_path"),
                                               ({"currency": "yuan!"}, "currency")])
def test_bad_settings_are_refused_with_the_setting_named(values, complaint):
    with pytest.raises(BadInput, match=complaint):
        enable_epusdt(**{"url": "https://usdt.example", **values})
    assert not GatewayAccount.objects.filter(name="epusdt", enabled=True).exists()


# -- notifications ----------------------------------------------------------------------------------

def test_paid_notification_fulfils_the_order_and_answers_ok(client, make_product, instance):
    # given
    order = order_for(client, make_product, instance, quantity=2)
    trade_id = Order.objects.get(order_no=order["order_no"]).gateway_ref
    # when
    response = notify(client, epusdt_notice(order_no=order["order_no"], amount=order["amount"], trade_id=trade_id))
    # then
    assert (response.status_code, response.content) == (200, b"ok")
    detail = client.get(f"/api/v1/orders/{order['order_no']}", HTTP_X_ORDER_TOKEN=order["token"]).json()
    assert detail["status"] == "fulfilled" and len(detail["keys"]) == 2
    row = last_notification()
    assert (row.result, row.verified, row.order_no, row.trade_no) == ("fulfilled", True, order["order_no"], trade_id)


def test_the_same_notification_again_is_acknowledged_and_changes_nothing(client, make_product, instance):
    # given
    order = order_for(client, make_product, instance)
    fields = epusdt_notice(order_no=order["order_no"], amount=order["amount"])
    notify(client, fields)
    # when
    again = notify(client, fields)
    # then
    assert (again.status_code, again.content) == (200, b"ok")
    assert payments_of(order["order_no"]) == 1
    assert OrderKey.objects.count() == 1 and Key.objects.filter(status="sold").count() == 1
    assert OutboxMessage.objects.filter(kind="order_keys").count() == 1
    assert list(Notification.objects.order_by("id").values_list("result", flat=True)) == ["fulfilled", "duplicate"]


def test_a_recorded_notification_is_accepted_byte_for_byte(client, make_product, instance):
    # given: the shop configured with the recorded token, an order renumbered to the recorded one
    sample = fixture("epusdt_paid")
    instance.token = sample["token"]
    enable_epusdt(instance.url, token=sample["token"])
    item = make_product(price=Decimal(sample["price"]))
    add_keys(item, ["REC-1"])
    order = create_order(client, item, gateway="epusdt")
    Order.objects.filter(order_no=order["order_no"]).update(order_no=sample["order_no"])
    # when
    response = post_json(client, "epusdt", sample["body"])
    # then
    assert response.content == b"ok"
    assert Order.objects.get(order_no=sample["order_no"]).status == "fulfilled"


def test_a_bad_signature_is_refused(client, make_product, instance):
    order = order_for(client, make_product, instance)
    fields = {**epusdt_notice(order_no=order["order_no"], amount=order["amount"]), "signature": "0" * 32}
    response = notify(client, fields)
    assert (response.status_code, response.content) == (400, b"fail")
    assert (last_notification().result, last_notification().error) == ("rejected", "bad signature")
    assert nothing_delivered()


def test_a_blank_configured_token_refuses_everything(client, make_product, instance):
    # given: a token of spaces, and a notification signed with exactly that
    order = order_for(client, make_product, instance)
    enable_epusdt(instance.url, token="   ")
    # when
    response = notify(client, epusdt_notice(order_no=order["order_no"], amount=order["amount"], token="   "))
    # then
    assert response.status_code == 400
    assert "api_auth_token is empty" in last_notification().error
    assert nothing_delivered()
    with pytest.raises(VerificationFailed, match="empty"):
        gateway_for(instance, token="").parse_notification(inbound_from(RequestFactory().post(
            "/", data=to_json(epusdt_notice(order_no="1", amount="1", token="")), content_type="application/json")))


def test_a_wrong_amount_is_flagged_and_delivers_nothing(client, make_product, instance):
    order = order_for(client, make_product, instance)
    response = notify(client, epusdt_notice(order_no=order["order_no"], amount="0.01"))
    assert response.content == b"ok"
    assert Order.objects.get(order_no=order["order_no"]).status == "flagged"
    assert last_notification().result == "flagged"
    assert nothing_delivered()


def test_another_orders_number_without_re_signing_is_refused(client, make_product, instance):
    # given: a genuine notification for a cheap order, its order_id swapped for another order's
    cheap = order_for(client, make_product, instance, price=Decimal("1.00"))
    dear = stocked_order(client, make_product, gateway="epusdt", price=Decimal("1.00"))
    fields = {**epusdt_notice(order_no=cheap["order_no"], amount=cheap["amount"]), "order_id": dear["order_no"]}
    # when
    response = notify(client, fields)
    # then
    assert response.status_code == 400 and last_notification().result == "rejected"
    assert nothing_delivered()


@pytest.mark.parametrize("status", [1, 3])
def test_waiting_or_expired_is_acknowledged_and_delivers_nothing(client, make_product, instance, status):
    order = order_for(client, make_product, instance)
    response = notify(client, epusdt_notice(order_no=order["order_no"], amount=order["amount"], status=status))
    assert (response.status_code, response.content) == (200, b"ok")
    assert Order.objects.get(order_no=order["order_no"]).status == "pending"
    assert (last_notification().result, last_notification().verified) == ("ignored", True)
    assert nothing_delivered()


@pytest.mark.parametrize("amount", [Num('["29.90"]'), Num('{"value": 29.9}'), Num("[29.9, 0.01]"), Num("true"),
                                    Num("null"), Num("1e1"), Num("NaN"), "29.9abc"])
def test_odd_amounts_are_refused_never_a_500(client, make_product, instance, amount):
    # given: signed with the real token, so only the shape check stands in the way
    order = order_for(client, make_product, instance, price=Decimal("10.00"))
    fields = {**epusdt_notice(order_no=order["order_no"], amount="10"), "amount": amount}
    fields["signature"] = epusdt_sign({k: str(v) for k, v in fields.items()}, EPUSDT_TOKEN)
    # when
    response = notify(client, fields)
    # then
    assert response.status_code == 400
    assert last_notification().result == "rejected"
    assert nothing_delivered()


@pytest.mark.parametrize("body", [b'{"order_id": "1", "order_id": "2"}', b"[]", b"", b"not json", b'"ok"',
                                  b"{" * 5000, b'{"amount": 1e999}'])
def test_malformed_bodies_are_refused_never_a_500(client, instance, body):
    enable_epusdt(instance.url)
    response = post_json(client, "epusdt", body)
    assert response.status_code == 400 and last_notification().result == "rejected"


@pytest.mark.sqlite_only
def test_acknowledgement_bodies():
    gw = EpusdtGateway(config={"url": "https://usdt.example"}, secrets={"api_auth_token": EPUSDT_TOKEN})
    ok, bad = response_from(gw.acknowledge(True)), response_from(gw.acknowledge(False))  # as the edge sends them
    assert (ok.status_code, ok.content, ok["Content-Type"]) == (200, b"ok", "text/plain")
    assert (bad.status_code, bad.content) == (400, b"fail")


# -- query ------------------------------------------------------------------------------------------

@pytest.mark.sqlite_only
@pytest.mark.parametrize("status, paid", [(1, False), (2, True), (3, False)])
def test_check_status_answers_reconciliation(instance, status, paid):
    instance.trades["T-1"] = {"trade_id": "T-1", "order_id": "261127120012345678", "amount": 29.9, "status": status}
    info = OrderInfo(order_no="261127120012345678", amount=Decimal("29.90"), currency="CNY", subject="x",
                     email="b@example.com", gateway_ref="T-1")
    notice = gateway_for(instance).query(info)
    assert (notice.order_no, notice.trade_no, notice.amount, notice.paid) == (info.order_no, "T-1", Decimal("29.90"), paid)
    assert instance.requests[-1][:2] == ("GET", "/pay/check-status/T-1")


@pytest.mark.sqlite_only
def test_query_without_a_trade_id_or_for_an_unknown_trade_is_none(instance):
    info = OrderInfo(order_no="1", amount=Decimal("1.00"), currency="CNY", subject="x", email="b@example.com")
    assert gateway_for(instance).query(info) is None and instance.requests == []
    assert gateway_for(instance).query(replace(info, gateway_ref="nope")) is None


def test_a_lost_notification_is_made_up_for_by_reconciliation(client, make_product, instance, clock_travel):
    # given: a paid trade whose notification never arrived
    order = order_for(client, make_product, instance)
    instance.trades[Order.objects.get(order_no=order["order_no"]).gateway_ref]["status"] = 2
    clock_travel(timedelta(minutes=10))
    # when
    confirmed = reconcile_pending()
    # then
    assert confirmed == 1
    assert Order.objects.get(order_no=order["order_no"]).status == "fulfilled"
