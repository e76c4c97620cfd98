"""TokenPay played by a loopback fake of its site: checkout creates a signed order, signed
notifications fulfil exactly once, forgeries and oddities change nothing, `/Query` answers
reconciliation."""
from __future__ import annotations

import json
from dataclasses import replace
from datetime import timedelta
from decimal import Decimal
from urllib.parse import parse_qs, urlsplit

import pytest
from django.test import RequestFactory

from kami.core.edge import inbound_from, response_from
from kami.core.errors import BadInput, KamiError, Retryable, VerificationFailed
from kami.delivery.models import OutboxMessage
from kami.fulfilment.reconcile import reconcile_pending
from kami.orders.models import Order, OrderKey
from kami.payments.gateways.tokenpay import TokenPayGateway, tokenpay_sign
from kami.payments.interface import OrderInfo, Urls
from kami.payments.models import GatewayAccount, Notification
from kami.stock.models import Key
from tests.payments.epay_play import return_url
from tests.payments.usdt_play import (TOKENPAY_TOKEN, FakeTokenPay, Num, add_keys, create_order, enable_tokenpay,
                                      fixture, last_notification, nothing_delivered, payments_of, post_json,
                                      stocked_order, stored_text, to_json, tokenpay_notice, tokenpay_signature)

pytestmark = pytest.mark.django_db(transaction=True)
# Tests marked sqlite_only talk to the gateway's loopback fake or parse alone: the same on every engine.
ORDER = OrderInfo(order_no="261127120012345678", amount=Decimal("29.90"), currency="CNY", subject="x",
                  email="b@example.com")
URLS = Urls(notify="http://t/pay/tokenpay/notify", ret="http://t/o")


@pytest.fixture
def site():
    fake = FakeTokenPay().start()
    try:
        yield fake
    finally:
        fake.stop()
    assert not [row.pk for row in Notification.objects.all() if TOKENPAY_TOKEN in stored_text(row)]


def gateway_for(fake, *, token: str = TOKENPAY_TOKEN, **config) -> TokenPayGateway:
    return TokenPayGateway(config={"url": fake.url, **config}, secrets={"api_token": token})


def order_for(client, make_product, site, **kwargs) -> dict:
    enable_tokenpay(site.url)
    return stocked_order(client, make_product, gateway="tokenpay", **kwargs)


def notify(client, fields: dict):
    return post_json(client, "tokenpay", to_json(fields))


# -- the signature ----------------------------------------------------------------------------------

@pytest.mark.sqlite_only
def test_the_published_create_and_query_signatures_are_reproduced():
    sample = fixture("tokenpay_doc_create")
    assert tokenpay_sign(sample["params"], sample["token"]) == sample["signature"] == "e9765880db6081496456283678e70152"
    assert tokenpay_sign(sample["query_params"], sample["token"]) == sample["query_signature"]


@pytest.mark.sqlite_only
@pytest.mark.parametrize("name", ["tokenpay_doc_notify", "tokenpay_paid_usdt"])
def test_recorded_notifications_verify_as_sent(name):
    # given: the published example (e5eaa888…) and a newer version's body signed with md5sum
    sample = fixture(name)
    request = RequestFactory().post("/pay/tokenpay/notify", data=sample["body"], content_type="application/json")
    # when
    notice = TokenPayGateway(config={"url": "https://tp.example"}, secrets={"api_token": sample["token"]}) \
        .parse_notification(inbound_from(request))
    # then
    assert (notice.order_no, notice.trade_no, notice.amount, notice.currency, notice.paid) == (
        sample["order_no"], sample["trade_id"], Decimal(sample["amount"]), "CNY", True)
    assert json.loads(sample["body"])["Signature"] == tokenpay_sign(notice.raw, sample["token"])


# -- checkout ---------------------------------------------------------------------------------------

def test_checkout_creates_a_signed_order_and_redirects_to_its_pay_page(client, make_product, site):
    # when
    order = order_for(client, make_product, site, quantity=2)
    # then: the fake checked the signature over the text as sent (it answered an order, not 签名验证失败)
    method, path, body = site.requests[-1]
    sent = json.loads(body, parse_float=str)
    assert (method, path) == ("POST", "/CreateOrder")
    assert b'"ActualAmount": 59.80' in body
    assert (sent["OutOrderId"], sent["OrderUserKey"]) == (order["order_no"], "buyer@example.com")
    assert sent["Currency"] == "USDT_TRC20"
    assert (sent["NotifyUrl"], sent["RedirectUrl"]) == ("http://testserver/pay/tokenpay/notify", return_url(order))
    assert order["token"] not in body.decode()  # the order token never goes to a third party
    trade_id = Order.objects.get(order_no=order["order_no"]).gateway_ref
    assert order["payment"] == {"type": "redirect", "url": f"{site.url}/Pay?Id={trade_id}"}
    assert site.orders[trade_id]["outOrderId"] == order["order_no"]


@pytest.mark.sqlite_only
def test_the_configured_coin_is_what_the_buyer_pays_in(site):
    gateway_for(site, currency="TRX").create_payment(ORDER, URLS)
    assert json.loads(site.requests[-1][2])["Currency"] == "TRX"


@pytest.mark.sqlite_only
@pytest.mark.parametrize("token, mode, error, words", [
    ("wrong-token", "normal", KamiError, "签名验证失败"), (TOKENPAY_TOKEN, "error500", Retryable, "HTTP 500"),
    (TOKENPAY_TOKEN, "drop", Retryable, "will retry"), (TOKENPAY_TOKEN, "not_json", KamiError, "without JSON"),
])
def test_a_refused_or_failed_creation_says_why(site, token, mode, error, words):
    site.mode = mode
    with pytest.raises(error, match=words) as caught:
        gateway_for(site, token=token).create_payment(ORDER, URLS)
    assert token not in str(caught.value)


@pytest.mark.sqlite_only
def test_an_order_in_another_fiat_is_refused(site):
    with pytest.raises(BadInput, match="CNY"):
        gateway_for(site).create_payment(replace(ORDER, currency="USD"), URLS)


@pytest.mark.parametrize("values, complaint", [({"url": "tp.example"}, "url"), ({"currency": "USDT TRC20"}, "currency"),
                                               ({"fiat": "yuan!"}, "currency")])
def test_bad_settings_are_refused_with_the_setting_named(values, complaint):
    with pytest.raises(BadInput, match=complaint):
        enable_tokenpay(**{"url": "https://tp.example", **values})
    assert not GatewayAccount.objects.filter(name="tokenpay", enabled=True).exists()


# -- notifications ----------------------------------------------------------------------------------

def test_paid_notification_fulfils_the_order_and_answers_ok(client, make_product, site):
    # given
    order = order_for(client, make_product, site, quantity=2)
    trade_id = Order.objects.get(order_no=order["order_no"]).gateway_ref
    # when
    response = notify(client, tokenpay_notice(order_no=order["order_no"], amount=order["amount"], trade_id=trade_id))
    # then
    assert (response.status_code, response.content) == (200, b"ok")
    detail = client.get(f"/api/v1/orders/{order['order_no']}", HTTP_X_ORDER_TOKEN=order["token"]).json()
    assert detail["status"] == "fulfilled" and len(detail["keys"]) == 2
    row = last_notification()
    assert (row.result, row.verified, row.order_no, row.trade_no) == ("fulfilled", True, order["order_no"], trade_id)


def test_the_same_notification_again_is_acknowledged_and_changes_nothing(client, make_product, site):
    order = order_for(client, make_product, site)
    fields = tokenpay_notice(order_no=order["order_no"], amount=order["amount"])
    notify(client, fields)
    again = notify(client, fields)
    assert (again.status_code, again.content) == (200, b"ok")
    assert payments_of(order["order_no"]) == 1
    assert OrderKey.objects.count() == 1 and Key.objects.filter(status="sold").count() == 1
    assert OutboxMessage.objects.filter(kind="order_keys").count() == 1
    assert list(Notification.objects.order_by("id").values_list("result", flat=True)) == ["fulfilled", "duplicate"]


def test_a_recorded_notification_is_accepted_byte_for_byte(client, make_product, site):
    # given
    sample = fixture("tokenpay_paid_usdt")
    site.token = sample["token"]
    enable_tokenpay(site.url, token=sample["token"])
    item = make_product(price=Decimal(sample["price"]))
    add_keys(item, ["REC-1", "REC-2"])
    order = create_order(client, item, quantity=sample["quantity"], gateway="tokenpay")
    Order.objects.filter(order_no=order["order_no"]).update(order_no=sample["order_no"])
    # when
    response = post_json(client, "tokenpay", sample["body"])
    # then
    assert response.content == b"ok"
    assert Order.objects.get(order_no=sample["order_no"]).status == "fulfilled"
    assert OrderKey.objects.count() == 2


def test_a_bad_signature_is_refused(client, make_product, site):
    order = order_for(client, make_product, site)
    fields = {**tokenpay_notice(order_no=order["order_no"], amount=order["amount"]), "Signature": "0" * 32}
    response = notify(client, fields)
    assert (response.status_code, response.content) == (400, b"fail")
    assert (last_notification().result, last_notification().error) == ("rejected", "bad signature")
    assert nothing_delivered()


def test_a_field_added_after_signing_is_refused(client, make_product, site):
    order = order_for(client, make_product, site)
    fields = {**tokenpay_notice(order_no=order["order_no"], amount=order["amount"]), "PassThroughInfo": "x"}
    assert notify(client, fields).status_code == 400
    assert nothing_delivered()


def test_a_blank_configured_token_refuses_everything(client, make_product, site):
    order = order_for(client, make_product, site)
    enable_tokenpay(site.url, token="  ")
    response = notify(client, tokenpay_notice(order_no=order["order_no"], amount=order["amount"], token="  "))
    assert response.status_code == 400
    assert "api_token is empty" in last_notification().error
    assert nothing_delivered()
    with pytest.raises(VerificationFailed, match="empty"):
        gateway_for(site, token="").parse_notification(inbound_from(RequestFactory().post(
            "/", data=to_json(tokenpay_notice(order_no="1", amount="1", token="")), content_type="application/json")))


def test_a_wrong_amount_is_flagged_and_delivers_nothing(client, make_product, site):
    order = order_for(client, make_product, site)
    response = notify(client, tokenpay_notice(order_no=order["order_no"], amount="0.01"))
    assert response.content == b"ok"
    assert Order.objects.get(order_no=order["order_no"]).status == "flagged"
    assert nothing_delivered()


def test_another_orders_number_without_re_signing_is_refused(client, make_product, site):
    cheap = order_for(client, make_product, site, price=Decimal("1.00"))
    other = stocked_order(client, make_product, gateway="tokenpay", price=Decimal("1.00"))
    fields = {**tokenpay_notice(order_no=cheap["order_no"], amount=cheap["amount"]), "OutOrderId": other["order_no"]}
    response = notify(client, fields)
    assert response.status_code == 400 and last_notification().result == "rejected"
    assert nothing_delivered()


@pytest.mark.parametrize("status", [0, 2])
def test_pending_or_expired_is_acknowledged_and_delivers_nothing(client, make_product, site, status):
    order = order_for(client, make_product, site)
    response = notify(client, tokenpay_notice(order_no=order["order_no"], amount=order["amount"], status=status))
    assert (response.status_code, response.content) == (200, b"ok")
    assert Order.objects.get(order_no=order["order_no"]).status == "pending"
    assert (last_notification().result, last_notification().verified) == ("ignored", True)
    assert nothing_delivered()


@pytest.mark.parametrize("amount", [Num('["29.90"]'), Num('{"v": "29.90"}'), Num("[29.9, 0.01]"), Num("true"),
                                    Num("1e1"), Num("NaN"), "29.9abc", Num("null")])
def test_odd_amounts_are_refused_never_a_500(client, make_product, site, amount):
    # given: signed with the real token, so only the shape check stands in the way
    order = order_for(client, make_product, site, price=Decimal("10.00"))
    fields = {**tokenpay_notice(order_no=order["order_no"], amount="10.00"), "ActualAmount": amount}
    fields["Signature"] = tokenpay_signature({k: str(v) for k, v in fields.items()})
    response = notify(client, fields)
    assert response.status_code == 400 and last_notification().result == "rejected"
    assert nothing_delivered()


@pytest.mark.parametrize("body", [b'{"Id": "1", "Id": "2"}', b"[]", b"", b"not json", b"{" * 5000, b'{"Status": 1e999}'])
def test_malformed_bodies_are_refused_never_a_500(client, site, body):
    enable_tokenpay(site.url)
    response = post_json(client, "tokenpay", body)
    assert response.status_code == 400 and last_notification().result == "rejected"


@pytest.mark.sqlite_only
def test_acknowledgement_bodies(site):
    ok, bad = (response_from(gateway_for(site).acknowledge(ok)) for ok in (True, False))  # as the edge sends them
    assert (ok.status_code, ok.content, ok["Content-Type"]) == (200, b"ok", "text/plain")
    assert (bad.status_code, bad.content) == (400, b"fail")


# -- query ------------------------------------------------------------------------------------------

@pytest.mark.sqlite_only
@pytest.mark.parametrize("status, paid", [(0, False), (1, True), (2, False), ("Paid", True)])
def test_query_answers_reconciliation(site, status, paid):
    site.orders["6745f0c2-1a3b"] = {"id": "6745f0c2-1a3b", "outOrderId": ORDER.order_no, "actualAmount": 29.9,
                                    "status": status}
    notice = gateway_for(site).query(replace(ORDER, gateway_ref="6745f0c2-1a3b"))
    assert (notice.order_no, notice.trade_no, notice.amount, notice.paid) == (
        ORDER.order_no, "6745f0c2-1a3b", Decimal("29.9"), paid)
    query = parse_qs(urlsplit(site.requests[-1][1]).query)
    assert query["Signature"] == [tokenpay_signature({"Id": "6745f0c2-1a3b"})]


@pytest.mark.sqlite_only
def test_query_without_an_id_or_for_an_unknown_order_is_none(site):
    assert gateway_for(site).query(ORDER) is None and site.requests == []
    assert gateway_for(site).query(replace(ORDER, gateway_ref="nope")) is None


@pytest.mark.sqlite_only
def test_query_with_the_wrong_token_says_so(site):
    with pytest.raises(KamiError, match="api_token"):
        gateway_for(site, token="wrong").query(replace(ORDER, gateway_ref="x"))


def test_a_lost_notification_is_made_up_for_by_reconciliation(client, make_product, site, clock_travel):
    order = order_for(client, make_product, site)
    site.orders[Order.objects.get(order_no=order["order_no"]).gateway_ref]["status"] = 1
    clock_travel(timedelta(minutes=10))
    assert reconcile_pending() == 1
    assert Order.objects.get(order_no=order["order_no"]).status == "fulfilled"
