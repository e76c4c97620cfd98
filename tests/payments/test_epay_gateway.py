"""The Epay module on its own: the signature recipe, the payment redirect, settings, the ack."""
from __future__ import annotations

import hashlib
from decimal import Decimal
from urllib.parse import parse_qsl, urlencode, urlsplit

import pytest
from django.test import RequestFactory

from kami.core.edge import inbound_from, response_from
from kami.core.errors import BadInput, VerificationFailed
from kami.payments.gateways.epay import EpayGateway, epay_sign
from kami.payments.interface import OrderInfo, Urls
from kami.payments.models import GatewayAccount
from kami.payments.registry import gateway_get
from tests.payments.epay_play import KEY, PID, URL, enable_epay, fixture, paid_params, return_url, stocked_order

pytestmark = pytest.mark.sqlite_only  # the signature recipe and redirects: the same on every engine


def gateway(**config) -> EpayGateway:
    return EpayGateway(config={"pid": PID, "url": URL, **config}, secrets={"key": KEY})


@pytest.mark.parametrize("name", ["epay_paid_get", "epay_paid_post", "epay_wait_buyer_pay"])
def test_signature_matches_the_one_computed_outside_kami(name):
    # given: a sample signed with md5sum, not with Kami's code
    sample = fixture(name)
    # when / then
    assert epay_sign(sample["params"], sample["key"]) == sample["params"]["sign"]


def test_signature_skips_sign_sign_type_and_empty_values_and_does_not_url_encode():
    params = {"b": "x y&z=1", "a": "测试", "empty": "", "sign": "zzz", "sign_type": "MD5"}
    assert epay_sign(params, "K") == hashlib.md5("a=测试&b=x y&z=1K".encode()).hexdigest()


def test_a_name_with_url_syntax_in_it_verifies_as_sent():
    # given: a product name with &, =, + and Chinese, sent URL-encoded as the site does
    params = paid_params(order_no="261127120012345678", money="29.90", name="A&B=C +测试")
    request = RequestFactory().get("/pay/epay/notify?" + urlencode(params))
    # when
    notice = gateway().parse_notification(inbound_from(request))
    # then
    assert (notice.order_no, notice.amount, notice.currency, notice.paid) == ("261127120012345678", Decimal("29.90"), "CNY", True)


def test_the_configured_currency_is_what_the_notice_says():
    request = RequestFactory().get("/pay/epay/notify?" + urlencode(paid_params(order_no="1", money="5.00")))
    assert gateway(currency="usd").parse_notification(inbound_from(request)).currency == "USD"


def test_a_key_of_only_the_empty_string_is_never_accepted():
    params = paid_params(order_no="1", money="5.00", key="")
    request = RequestFactory().get("/pay/epay/notify?" + urlencode(params))
    with pytest.raises(VerificationFailed, match="empty"):
        EpayGateway(config={"pid": PID, "url": URL}, secrets={"key": ""}).parse_notification(inbound_from(request))


def test_acknowledgement_bodies():
    ok, bad = response_from(gateway().acknowledge(True)), response_from(gateway().acknowledge(False))  # as the edge sends them
    assert (ok.status_code, ok.content, ok["Content-Type"]) == (200, b"success", "text/plain")
    assert (bad.status_code, bad.content) == (400, b"fail")


@pytest.mark.django_db
def test_checkout_redirects_to_submit_php_with_a_signed_request(client, make_product):
    # given
    enable_epay(url="https://pay.example/sub", type="wxpay")
    # when
    order = stocked_order(client, make_product, quantity=2)
    # then
    url = urlsplit(order["payment"]["url"])
    assert order["payment"]["type"] == "redirect"
    assert (url.scheme, url.netloc, url.path) == ("https", "pay.example", "/sub/submit.php")
    params = dict(parse_qsl(url.query, keep_blank_values=True))
    assert params == {
        "pid": PID, "type": "wxpay", "out_trade_no": order["order_no"], "money": "59.80", "name": "Test product",
        "notify_url": "http://testserver/pay/epay/notify", "return_url": return_url(order),
        "sign": epay_sign(params, KEY), "sign_type": "MD5",
    }
    assert KEY not in order["payment"]["url"]
    assert order["token"] not in order["payment"]["url"]  # Epay sites log it: the order token never goes there


def test_create_payment_refuses_an_order_in_another_currency():
    info = OrderInfo(order_no="1", amount=Decimal("1.00"), currency="USD", subject="x", email="b@example.com")
    with pytest.raises(BadInput, match="CNY"):
        gateway().create_payment(info, Urls(notify="http://testserver/pay/epay/notify", ret="http://testserver/o/1"))


def test_amounts_in_a_zero_decimal_currency_are_whole_numbers():
    info = OrderInfo(order_no="1", amount=Decimal("500"), currency="JPY", subject="x", email="b@example.com")
    action = gateway(currency="JPY").create_payment(info, Urls(notify="http://t/pay/epay/notify", ret="http://t/o"))
    assert dict(parse_qsl(urlsplit(action.url).query))["money"] == "500"


@pytest.mark.django_db
@pytest.mark.parametrize("given, stored", [("https://pay.example", "https://pay.example/"),
                                           ("https://pay.example/", "https://pay.example/"),
                                           (" http://127.0.0.1:8080/epay ", "http://127.0.0.1:8080/epay/")])
def test_the_site_url_is_kept_with_one_trailing_slash(given, stored):
    enable_epay(url=given)
    assert GatewayAccount.objects.get(name="epay").config["url"] == stored
    assert gateway_get("epay").base_url == stored


@pytest.mark.django_db
@pytest.mark.parametrize("values, complaint", [
    ({"url": "pay.example"}, "url"), ({"url": "ftp://pay.example/"}, "url"), ({"url": "https://pay.example/?a=1"}, "url"),
    ({"pid": "10 01"}, "pid"), ({"type": "Ali Pay"}, "type"), ({"currency": "yuan!"}, "currency"),
])
def test_bad_settings_are_refused_with_the_setting_named(values, complaint):
    with pytest.raises(BadInput, match=complaint):
        enable_epay(**values)
    assert not GatewayAccount.objects.filter(name="epay", enabled=True).exists()
