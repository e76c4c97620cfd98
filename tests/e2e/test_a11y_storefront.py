"""Accessibility of every buyer page, in a real browser (Debian's Chromium) with axe-core (the
copy bundled in the axe-playwright-python package, nothing fetched): home, product, the QR pay
page, the order page (pending and with keys), lookup and recent orders, in zh-hans and en, with
the merchant's logo, notice and footer, and with the captcha on. No serious or critical
violation is allowed. The buy form is also filled and sent with the keyboard alone."""
from __future__ import annotations

import io
from decimal import Decimal

import pytest
from axe_playwright_python.sync_playwright import Axe
from django.core.cache import cache
from PIL import Image

from kami.catalog.services import tier_price_set
from kami.shop.services import shop_settings_update
from kami.stock.services import keys_generate
from tests.payments.alipay_play import enable_alipay, fake_alipay  # noqa: F401 (fixture)
from tests.sandbox_play import enable_sandbox
from tests.e2e.chromium import SHOTS

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.sqlite_only]

BLOCKING = {"serious", "critical"}
AXE = Axe()


@pytest.fixture
def shop(live_server, settings, make_product, fake_alipay):
    """A shop with everything a page can show: logo, Markdown notice, footer, a described
    product with volume prices, the sandbox and Alipay (QR) gateways."""
    settings.KAMI_BASE_URL = live_server.url
    cache.clear()
    logo = io.BytesIO()
    Image.new("RGB", (120, 40), (36, 86, 214)).save(logo, "PNG")
    shop_settings_update(actor="test", name="Card Corner", logo=logo.getvalue(), notice_format="markdown",
                         notice="**Holiday**: orders are delivered as usual. [Help](https://help.example/)",
                         footer="Support: help@example.com")
    enable_sandbox()
    enable_alipay(gateway_url=fake_alipay.url)
    product = make_product("gift-card", name="Gift card 100", price=Decimal("10.00"), max_qty=5,
                           description="## Fast\n\nDelivered **at once**.")
    tier_price_set(product=product, min_quantity=3, unit_price=Decimal("9.00"))
    keys_generate(product=product, count=5, actor="test")
    yield product
    cache.clear()


def blocking(page, where: str) -> list[str]:
    results = AXE.run(page)
    return [f"{where}: {v['id']} ({v['impact']}): {v['help']} — " + "; ".join(n["target"][0] for n in v["nodes"][:3])
            for v in results.response["violations"] if v["impact"] in BLOCKING]


def buy(page, live_server, gateway: str) -> None:
    page.goto(live_server.url + "/p/gift-card")
    page.fill("#buy-form input[name=email]", "buyer@example.com")
    page.check(f"#buy-form input[name=gateway][value={gateway}]")
    page.click("#buy-form button[type=submit]")


@pytest.mark.parametrize("locale, simulate", [("zh-CN", "模拟支付"), ("en-US", "Simulate payment")])
def test_every_buyer_page_has_no_serious_accessibility_violation(browser, live_server, shop, locale, simulate):  # noqa: F811
    context = browser.new_context(locale=locale, viewport={"width": 1280, "height": 900})
    page = context.new_page()
    shots = SHOTS / f"a11y-{locale}"
    shots.mkdir(parents=True, exist_ok=True)
    found: list[str] = []

    def check(name: str) -> None:
        page.screenshot(path=str(shots / f"{name}.png"), full_page=True)
        found.extend(blocking(page, f"{locale} {name}"))

    # home and product
    page.goto(live_server.url + "/")
    check("1-home")
    page.goto(live_server.url + "/p/gift-card")
    check("2-product")
    # the QR pay page (Alipay) and its pending order page
    buy(page, live_server, "alipay")
    page.wait_for_selector(".qr svg")
    check("3-pay-qr")
    page.click("#order-link")
    page.wait_for_selector("#status")
    check("4-order-pending")
    # a paid order with its keys
    buy(page, live_server, "sandbox")
    page.get_by_role("button", name=simulate).click()
    page.wait_for_selector("code.key")
    check("5-order-keys")
    # lookup, and this browser's recent orders (both orders above)
    page.goto(live_server.url + "/lookup")
    check("6-lookup")
    page.goto(live_server.url + "/orders/recent")
    assert page.locator("ol.recent-orders li").count() == 2
    check("7-recent")
    context.close()
    assert found == []


def test_pages_with_the_captcha_have_no_serious_accessibility_violation(browser, live_server, shop, settings):  # noqa: F811
    settings.KAMI_CAPTCHA = True
    page = browser.new_context(locale="en-US").new_page()
    found: list[str] = []
    shots = SHOTS / "a11y-captcha"
    shots.mkdir(parents=True, exist_ok=True)
    for name, path in (("home", "/"), ("product", "/p/gift-card"), ("lookup", "/lookup")):
        page.goto(live_server.url + path)
        page.screenshot(path=str(shots / f"{name}.png"), full_page=True)
        found.extend(blocking(page, path))
    assert page.locator("img[src^='/captcha/image/']").first.evaluate("img => img.naturalWidth") > 0  # it loaded
    assert found == []


def test_a_buyer_can_buy_with_the_keyboard_alone(browser, live_server, shop):  # noqa: F811
    # given the product page, nothing focused
    page = browser.new_context(locale="en-US").new_page()
    page.goto(live_server.url + "/p/gift-card")
    # when the buyer tabs from the top: the first stop is the skip link, then the shop
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.className") == "skip"
    page.keyboard.press("Enter")  # skip to the content
    reached = []
    for _ in range(30):
        page.keyboard.press("Tab")
        name = page.evaluate("document.activeElement.name || document.activeElement.type || ''")
        reached.append(name)
        if name == "email":
            page.keyboard.type("buyer@example.com")
        if name == "gateway":  # a radio group: the arrow keys choose within it
            page.keyboard.press("ArrowDown")
            assert page.evaluate("document.activeElement.value") == "sandbox"
        if name == "submit" and "email" in reached:
            break
    # then every field of the buy form was reached in order, and Enter buys
    assert reached.index("quantity") < reached.index("email") < reached.index("lookup_password") < reached.index("gateway")
    page.keyboard.press("Enter")
    page.get_by_role("button", name="Simulate payment").wait_for()
