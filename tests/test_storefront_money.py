"""Amounts are written for the buyer's language and the currency: one filter, every page, and
the emails in the order's own language."""
from __future__ import annotations

import re
from decimal import Decimal
from urllib.parse import unquote

import pytest
from django.core.cache import cache
from django.template import Context, Template
from django.utils import translation

from kami.catalog.services import tier_price_set
from kami.shop.services import shop_settings_update
from kami.delivery.services import outbox_enqueue
from kami.delivery.worker import run_once
from kami.core.templatetags.kami_money import money_format
from tests.delivery.conftest import fulfilled_order, real_time, smtp  # noqa: F401 (fixtures)
from tests.factories import add_keys
from tests.sandbox_play import enable_sandbox


def parts(message):
    return message.get_body(preferencelist=("plain",)).get_content(), message.get_body(preferencelist=("html",)).get_content()


@pytest.mark.parametrize("language, amount, currency, shown", [
    ("zh-hans", "48.00", "CNY", "¥48.00"),
    ("en", "48.00", "CNY", "CN¥48.00"),
    ("zh-hans", "1234.5", "USD", "US$1,234.50"),
    ("en", "1234.5", "USD", "$1,234.50"),
    ("en", "19.90", "EUR", "€19.90"),
    ("en", "500", "JPY", "¥500"),
    ("zh-hans", "500", "JPY", "JP¥500"),
    ("en", "12.5", "USDT", "12.50 USDT"),  # no ISO currency: the code after the number
    ("zh-hans", "0.1", "usdt", "0.10 USDT"),
])
def test_money_is_written_per_language_and_currency(language, amount, currency, shown):
    assert money_format(Decimal(amount), currency, language) == shown


def test_the_filter_follows_the_active_language():
    template = Template("{% load kami_shop %}{{ amount|money:currency }}")
    context = Context({"amount": Decimal("48.00"), "currency": "CNY"})
    with translation.override("zh-hans"):
        assert template.render(context) == "¥48.00"
    with translation.override("en"):
        assert template.render(context) == "CN¥48.00"


@pytest.mark.django_db
def test_home_product_and_tier_table_use_the_format(client, make_product):
    # given
    enable_sandbox()
    product = make_product("gift", name="Gift card", price=Decimal("10.00"), currency="USD", max_qty=5)
    tier_price_set(product=product, min_quantity=3, unit_price=Decimal("8.80"))
    add_keys(product, ["M-1"])
    # when
    home_en = client.get("/", HTTP_ACCEPT_LANGUAGE="en").content.decode()
    page_en = client.get("/p/gift", HTTP_ACCEPT_LANGUAGE="en").content.decode()
    page_zh = client.get("/p/gift", HTTP_ACCEPT_LANGUAGE="zh-CN").content.decode()
    # then
    assert '<p class="price">$10.00</p>' in home_en and '<p class="price">$10.00</p>' in page_en
    assert "<td>$8.80</td>" in page_en and "<td>US$8.80</td>" in page_zh
    assert "10.00 USD" not in page_en


@pytest.mark.django_db
def test_the_order_page_and_the_lookup_list_use_the_format(client, make_product):
    # given an order of 2 × 24.00 CNY bought in the storefront
    enable_sandbox()
    product = make_product("duo", name="Duo", price=Decimal("24.00"))
    add_keys(product, ["D-1", "D-2"])
    bought = client.post("/buy/duo", {"email": "buyer@example.com", "quantity": "2", "gateway": "sandbox",
                                      "lookup_password": "open-sesame"}, HTTP_ACCEPT_LANGUAGE="en")
    order_url = unquote(re.search(r"return=([^&]+)", bought["Location"]).group(1))
    # when
    order_page = client.get(order_url, HTTP_ACCEPT_LANGUAGE="en").content.decode()
    cache.clear()  # lookup rate limits
    lookup = client.post("/lookup", {"email": "buyer@example.com", "password": "open-sesame"},
                         HTTP_ACCEPT_LANGUAGE="zh-CN").content.decode()
    # then
    assert "Duo × 2 · CN¥48.00" in order_page
    assert "Duo × 2 · ¥48.00" in lookup


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("locale, shown", [("en", "Refunded: CN¥29.90"), ("zh-hans", "退款金额: ¥29.90")])
def test_the_refund_email_writes_money_in_the_order_language_and_carries_the_shop_name(
        smtp, fulfilled_order, locale, shown):  # noqa: F811
    # given a shop named by the merchant and a refunded order
    cache.clear()
    shop_settings_update(actor="test", name="Card Corner")
    order = fulfilled_order(locale=locale)
    outbox_enqueue(kind="order_refunded", channel="email", target=order.email,
                   dedupe_key=f"order_refunded:{order.pk}:email", payload={"order_id": order.pk, "reason": ""})
    # when
    while run_once("w1"):
        pass
    # then
    mails = smtp.to("buyer@example.com")
    assert len(mails) == 2 and all("Card Corner" in str(m["Subject"]) for m in mails)  # keys, then refund
    text, html = parts(mails[-1])
    assert shown in text and "Card Corner" in text
    assert shown.split(": ")[1] in html
    cache.clear()


@pytest.mark.django_db
def test_the_pay_pages_use_the_format(client, make_product):
    from django.template.loader import render_to_string

    from tests.factories import make_orders

    # given a pending order of 29.90 CNY
    enable_sandbox()
    product = make_product()
    add_keys(product, ["P-1"])
    (order,) = make_orders(product, [1])
    # when the QR page and the sandbox's payment page are drawn in English
    with translation.override("en"):
        qr = render_to_string("storefront/pay_qr.html", {"order": order, "qr_svg": "", "gateway": "alipay",
                                                         "order_url": "/"})
    sandbox = client.get(f"/pay/sandbox/checkout/{order.order_no}?amount=29.90&currency=CNY",
                         HTTP_ACCEPT_LANGUAGE="en").content.decode()
    # then
    assert "<strong>CN¥29.90</strong>" in qr and "<strong>CN¥29.90</strong>" in sandbox
