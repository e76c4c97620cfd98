"""The buyer sees each gateway by its display name in their language, never by Kami's internal
name: on the product page's buy form, the home page's quick-buy form, the scan-to-pay page and
the order page."""
from __future__ import annotations

import re
from decimal import Decimal

import pytest
from django.template.loader import render_to_string
from django.utils import translation

from kami.fulfilment.checkout import checkout_start
from kami.payments.models import GatewayAccount
from kami.payments.registry import GATEWAYS
from tests.factories import add_keys, make_orders
from tests.sandbox_play import enable_sandbox

pytestmark = [pytest.mark.django_db, pytest.mark.sqlite_only]  # display names in templates: the same on every engine

SHOWN = {
    "en": {"alipay": "Alipay", "wechatpay": "WeChat Pay", "epay": "Epay", "stripe": "Card (Stripe)",
           "paypal": "PayPal", "epusdt": "USDT (TRC-20)", "tokenpay": "USDT / TRX", "sandbox": "Sandbox (demo)",
           "stars": "Telegram Stars"},
    "zh-hans": {"alipay": "支付宝", "wechatpay": "微信支付", "epay": "易支付", "stripe": "银行卡 (Stripe)",
                "paypal": "PayPal", "epusdt": "USDT (TRC-20)", "tokenpay": "USDT / TRX", "sandbox": "模拟支付（演示）",
                "stars": "Telegram Stars"},
}


def enable_every_gateway() -> None:
    # Only whether a gateway is enabled matters to the form; its settings are not read.
    GatewayAccount.objects.bulk_create(GatewayAccount(name=name, enabled=True) for name in GATEWAYS)


def choices(page: str, pattern: str) -> dict[str, str]:
    return {value: text.strip() for value, text in re.findall(pattern, page)}


@pytest.mark.parametrize("language", ["en", "zh-hans"])
def test_the_product_page_offers_each_gateway_by_its_display_name(client, make_product, language):
    # given every gateway enabled and a product in stock
    enable_every_gateway()
    add_keys(make_product("gift", price=Decimal("10.00")), ["K-1"])
    # when
    page = client.get("/p/gift", HTTP_ACCEPT_LANGUAGE=language).content.decode()
    # then each radio button keeps the internal name as its value and shows the display name
    shown = choices(page, r'<input type="radio" name="gateway" value="(\w+)"[^>]*>([^<]+)</label>')
    assert shown == SHOWN[language]


@pytest.mark.parametrize("language", ["en", "zh-hans"])
def test_the_home_page_quick_buy_form_shows_display_names(client, make_product, language):
    enable_every_gateway()
    add_keys(make_product("gift"), ["K-1"])
    page = client.get("/", HTTP_ACCEPT_LANGUAGE=language).content.decode()
    assert choices(page, r'<option value="(\w+)">([^<]+)</option>') == SHOWN[language]


@pytest.mark.parametrize("language", ["en", "zh-hans"])
def test_the_order_page_names_the_gateway_the_buyer_chose(client, make_product, language):
    # given an order to be paid in the sandbox
    enable_sandbox()
    add_keys(make_product("gift", price=Decimal("10.00")), ["K-1"])
    checkout = checkout_start(product_slug="gift", quantity=1, email="buyer@example.com", gateway="sandbox", buyer_ip="127.0.0.1",
                              locale=language)
    # when the buyer opens the order page
    page = client.get(checkout.order_url, HTTP_ACCEPT_LANGUAGE=language).content.decode()
    # then the summary line names the gateway as the buyer saw it when choosing
    summary = re.search(r'<section class="order">.*?<p>(.*?)</p>', page, re.S).group(1)
    assert summary.endswith(f" · {SHOWN[language]['sandbox']}")


@pytest.mark.parametrize("language", ["en", "zh-hans"])
def test_the_scan_to_pay_page_names_the_gateway(make_product, language):
    # given a pending WeChat Pay order on the scan-to-pay page
    product = make_product("gift")
    add_keys(product, ["K-1"])
    (order,) = make_orders(product, [1], gateway="wechatpay")
    # when
    with translation.override(language):
        page = render_to_string("storefront/pay_qr.html", {"order": order, "qr_svg": "", "gateway": "wechatpay",
                                                           "order_url": f"/orders/{order.order_no}?token=t"})
    # then
    assert f"· {SHOWN[language]['wechatpay']}</p>" in page
