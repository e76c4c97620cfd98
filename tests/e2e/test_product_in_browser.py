"""A buyer on a phone opens a product page, buys two at the volume price, pays in the sandbox
and sees two keys; a sold-out product's page offers no working buy button."""
from __future__ import annotations

import re
from decimal import Decimal

import pytest

from kami.catalog.services import tier_price_set
from kami.stock.services import keys_generate
from tests.e2e.test_buy_in_browser import KEY
from tests.sandbox_play import enable_sandbox
from tests.e2e.chromium import SHOTS

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.sqlite_only]

PHONE = {"width": 390, "height": 844}


def test_a_buyer_buys_two_at_the_tier_price_on_a_phone(browser, live_server, settings, make_product):  # noqa: F811
    # given a product at 10.00, 8.00 each from 2, with stock and the sandbox gateway
    settings.KAMI_BASE_URL = live_server.url
    enable_sandbox()
    product = make_product("tiered", name="Tiered card", price=Decimal("10.00"), description="**Fast** delivery")
    tier_price_set(product=product, min_quantity=2, unit_price=Decimal("8.00"))
    keys_generate(product=product, count=5, actor="test")
    context = browser.new_context(locale="en-US", viewport=PHONE)
    page = context.new_page()
    refused = []
    page.on("console", lambda m: refused.append(m.text) if "Content Security Policy" in m.text else None)
    shots = SHOTS / "product-phone"
    shots.mkdir(parents=True, exist_ok=True)
    # when the buyer opens the product page, buys 2 and pays in the sandbox
    page.goto(live_server.url + "/")
    page.click("#product-tiered h3 a")
    page.wait_for_url(re.compile(r"/p/tiered$"))
    assert "CN¥8.00" in page.inner_text("table.tiers")
    page.screenshot(path=str(shots / "1-product.png"), full_page=True)
    page.fill("#buy-form input[name=quantity]", "2")
    page.fill("#buy-form input[name=email]", "buyer@example.com")
    page.click("#buy-form button[type=submit]")
    simulate = page.get_by_role("button", name="Simulate payment")
    simulate.wait_for()
    assert "16.00" in page.content()
    simulate.click()
    page.wait_for_selector("code.key")
    page.screenshot(path=str(shots / "2-order.png"), full_page=True)
    # then two keys are shown, for 16.00
    keys = [k.strip() for k in page.locator("code.key").all_inner_texts()]
    assert len(keys) == 2 and all(KEY.match(k) for k in keys)
    assert "CN¥16.00" in page.inner_text("section.order")
    assert refused == []
    context.close()


def test_a_sold_out_product_page_has_a_disabled_button(browser, live_server, settings, make_product):  # noqa: F811
    # given a product with no keys
    settings.KAMI_BASE_URL = live_server.url
    enable_sandbox()
    make_product("empty", name="Empty card")
    page = browser.new_page(viewport=PHONE)
    # when
    page.goto(live_server.url + "/p/empty")
    # then
    assert page.locator("#buy-form button[type=submit]").is_disabled()
    assert page.locator("#soldout-note").is_visible()
