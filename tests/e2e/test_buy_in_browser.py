"""A buyer in a real browser (Debian's Chromium driven by Playwright): home → buy → sandbox
payment → order page with the key, at a phone and a desktop size, in zh-hans and en; the copy
button puts the key on the clipboard. Screenshots of each step go to test-output/e2e/."""
from __future__ import annotations

import re

import pytest

from kami.stock.services import keys_generate
from tests.factories import make_orders
from tests.sandbox_play import enable_sandbox
from tests.e2e.chromium import SHOTS

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.sqlite_only]

KEY = re.compile(r"^[2-9A-HJ-NP-Z]{4}(-[2-9A-HJ-NP-Z]{4}){3}$")




@pytest.mark.parametrize("locale,viewport,words", [
    ("zh-CN", {"width": 390, "height": 844}, {"simulate": "模拟支付", "done": "已付款，已发货"}),
    ("en-US", {"width": 1280, "height": 800}, {"simulate": "Simulate payment", "done": "Paid and delivered"}),
])
def test_a_buyer_gets_the_key_in_the_browser(browser, live_server, settings, make_product, locale, viewport, words):
    # given a shop with one product in stock and the sandbox gateway
    settings.KAMI_BASE_URL = live_server.url
    enable_sandbox()
    product = make_product("gift-card", name="Gift card 100")
    keys_generate(product=product, count=3, actor="test")
    context = browser.new_context(locale=locale, viewport=viewport)
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=live_server.url)
    page = context.new_page()
    refused = []  # anything the Content-Security-Policy blocked: a page that needs it is broken
    page.on("console", lambda message: refused.append(message.text) if "Content Security Policy" in message.text else None)
    shots = SHOTS / f"{locale}-{viewport['width']}"
    shots.mkdir(parents=True, exist_ok=True)
    # when the buyer picks the product, pays in the sandbox, and lands on the order page
    page.goto(live_server.url + "/")
    page.screenshot(path=str(shots / "1-home.png"), full_page=True)
    page.fill("#product-gift-card input[name=email]", "buyer@example.com")
    page.click("#product-gift-card button[type=submit]")
    simulate = page.get_by_role("button", name=words["simulate"])
    simulate.wait_for()
    page.screenshot(path=str(shots / "2-pay.png"), full_page=True)
    simulate.click()
    page.wait_for_selector("code.key")
    page.screenshot(path=str(shots / "3-order.png"), full_page=True)
    # then the key is shown, and its copy button puts it on the clipboard
    key = page.inner_text("code.key").strip()
    assert KEY.match(key)
    assert words["done"] in page.inner_text("#status")
    assert page.url.endswith("/return") and "token" not in page.url  # back from the gateway: no token in sight
    page.click("li button.copy")
    assert page.evaluate("navigator.clipboard.readText()") == key
    assert refused == []
    # and the language switcher works on this no-referrer page (its form posts with Origin: null)
    other, expected = ("en", "Paid and delivered") if locale.startswith("zh") else ("zh-hans", "已付款，已发货")
    page.select_option("select[name=language]", other)
    page.click("form.language button[type=submit]")
    page.wait_for_selector("code.key")
    assert expected in page.inner_text("#status")
    context.close()


def test_the_order_page_without_its_token_shows_nothing(browser, live_server, make_product):
    product = make_product()
    keys_generate(product=product, count=1, actor="test")
    (order,) = make_orders(product, [1])
    page = browser.new_page()
    response = page.goto(f"{live_server.url}/orders/{order.order_no}")
    assert response.status == 404
    assert page.locator("code.key").count() == 0
