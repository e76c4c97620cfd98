"""The owner in a real browser (Debian's Chromium): signs in with password and TOTP code, lands
on the dashboard with its charts, at a desktop and a phone size; and Django's admin pages the
back office is built from (login, a changelist, a change form with an inline) run under our
Content-Security-Policy without a single violation. Screenshots: test-output/e2e/backoffice/."""
from __future__ import annotations

from decimal import Decimal

import pytest

from kami.core import clock
from kami.delivery.models import OutboxMessage
from kami.orders.models import Order
from kami.stock.services import keys_generate
from tests.backoffice.staffing import PASSWORD, admin_url, code_for, make_staff
from tests.factories import make_orders
from tests.e2e.chromium import BACKOFFICE_SHOTS as SHOTS

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.sqlite_only]





def shop_with_sales(make_product):
    product = make_product("steam-50", name="Steam 50", price=Decimal("50.00"), low_stock=20)
    keys_generate(product=product, count=12, actor="test")
    for order in make_orders(product, [1, 2, 1]):
        Order.objects.filter(pk=order.pk).update(status=Order.Status.FULFILLED, paid_at=clock.now())
    return product


def watch_csp(page) -> list[str]:
    refused: list[str] = []  # anything the Content-Security-Policy blocked: a page that needs it is broken
    page.on("console", lambda m: refused.append(m.text) if "Content Security Policy" in m.text else None)
    return refused


def sign_in(page, base: str, owner) -> None:
    page.goto(base + admin_url())
    page.fill("input[name=username]", owner.get_username())
    page.fill("input[name=password]", PASSWORD)
    page.fill("input[name=otp_token]", code_for(owner))
    page.click("input[type=submit]")
    page.wait_for_selector("#dashboard")


@pytest.mark.parametrize("size,viewport", [("desktop", {"width": 1280, "height": 900}),
                                           ("phone", {"width": 390, "height": 844})])
def test_the_owner_signs_in_and_sees_the_dashboard(browser, live_server, make_product, size, viewport):
    # given a shop with sales today and an owner with an authenticator
    shop_with_sales(make_product)
    owner = make_staff("owner", f"owner-{size}")
    context = browser.new_context(locale="zh-CN", viewport=viewport)
    page = context.new_page()
    refused = watch_csp(page)
    SHOTS.mkdir(parents=True, exist_ok=True)
    # when the owner signs in with the password and the current code
    page.goto(live_server.url + admin_url())
    page.screenshot(path=str(SHOTS / f"{size}-1-login.png"), full_page=True)
    sign_in(page, live_server.url, owner)
    # then the dashboard shows today's sales and both charts, drawn (visible, with bars)
    page.screenshot(path=str(SHOTS / f"{size}-2-dashboard.png"), full_page=True)
    assert page.inner_text("#sales-CNY dd.today").startswith("200.00")
    for chart in ("svg.chart-sales", "svg.chart-status"):
        box = page.locator(chart).bounding_box()
        assert box and box["width"] > 200 and box["height"] > 50, chart
    assert page.locator("svg.chart-sales rect.bo-bar-today").get_attribute("height") != "0.0"
    assert page.locator("#stock-table tr.bo-low").count() == 1  # 12 - 4 sold = 8 left, below 20
    # computed colours come from ops.css (no inline styles allowed): the today bar is filled
    fill = page.eval_on_selector("svg.chart-sales rect.bo-bar-today", "e => getComputedStyle(e).fill")
    assert fill == "rgb(65, 118, 144)"
    assert page.evaluate("document.documentElement.scrollWidth") <= viewport["width"]  # no sideways scrolling
    assert refused == []
    context.close()


def test_admin_pages_run_under_the_csp(browser, live_server, make_product):
    product = shop_with_sales(make_product)
    OutboxMessage.objects.create(kind="order_keys", channel="email", target="buyer@example.com", dedupe_key="e2e:1",
                                 status="manual", attempts=8, last_error="SMTP 550 5.1.1 mailbox unavailable",
                                 next_attempt_at=clock.now(), created_at=clock.now())
    owner = make_staff("owner", "owner-csp")
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    refused = watch_csp(page)
    sign_in(page, live_server.url, owner)
    for name, path in [("changelist", "catalog/product/"), ("change-inline", f"catalog/product/{product.pk}/change/"),
                       ("deliveries", "deliveries/?tab=manual"), ("gateways", "gateways/"), ("shop", "shop/"),
                       ("orders", "orders/order/"), ("coupon-add", "catalog/coupon/add/")]:
        response = page.goto(live_server.url + admin_url(path))
        assert response.status == 200, path
        page.wait_for_load_state("networkidle")
        page.screenshot(path=str(SHOTS / f"csp-{name}.png"), full_page=True)
    # the inline's "add another" row is built by admin JS: it must work without inline script
    page.goto(live_server.url + admin_url(f"catalog/product/{product.pk}/change/"))
    page.click(".add-row a")
    assert page.locator("tr.dynamic-tiers, tr[id^=tiers-]").count() >= 1
    page.click("#logout-form button[type=submit]")  # sign out (a POST), then the login page again
    page.goto(live_server.url + admin_url("login/"))
    page.wait_for_selector("input[name=otp_token]")
    assert refused == [], refused
    # and the watch does see a violation: an inline style attribute is refused and reported
    page.evaluate("document.body.setAttribute('style', 'color: red')")
    page.wait_for_timeout(200)
    assert len(refused) == 1 and "style-src" in refused[0], refused
