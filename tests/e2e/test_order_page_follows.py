"""The order page keeps following a paid order that waits (here on stock) in a real browser
(Debian's Chromium driven by Playwright): keys added through the product's restock path appear on
the open page without the buyer reloading it, and a tab left open for hours asks ever more
rarely. The page's timers run on Playwright's fake clock, so minutes and hours pass at once; the
asks, the server and the reload are real."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from io import StringIO
from urllib.parse import urlparse

import pytest
from django.core.management import call_command
from django.test import Client

from kami.orders.models import Order
from kami.orders.services import order_create
from kami.stock.services import keys_generate
from tests.e2e.test_buy_in_browser import KEY
from tests.sandbox_play import enable_sandbox, sandbox_notify

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.sqlite_only]
START = datetime(2026, 1, 1, tzinfo=timezone.utc)


def awaiting_stock_order(product) -> tuple[Order, str]:
    """A paid order left waiting for stock the ordinary way: two buyers order the last key, the
    first to pay gets it, the second's payment parks the order."""
    keys_generate(product=product, count=1, actor="test")
    (first, _), (second, token) = [order_create(product=product, quantity=1, email=f"b{i}@example.com",
                                                gateway="sandbox") for i in (1, 2)]
    api = Client()
    for order in (first, second):
        assert sandbox_notify(api, order_no=order.order_no, amount=str(order.amount)).status_code == 200
    second.refresh_from_db()
    assert second.status == Order.Status.AWAITING_STOCK
    return second, token


def stopped_clock(page) -> None:
    """The page's clock stands still between the test's steps (installed, it would also run on
    in real time): its timers fire only in `run_for`, however slow this machine is."""
    page.clock.install(time=START)
    page.clock.pause_at(START + timedelta(seconds=1))


def is_ask(request) -> bool:
    return urlparse(request.url).path.endswith("/status")


def status_asks(page) -> list:
    asks = []
    page.on("request", lambda request: asks.append(request.url) if is_ask(request) else None)
    return asks


def test_keys_added_while_the_page_is_open_appear_on_it(browser, live_server, settings, make_product):
    # given a buyer's open order page for an order paid and waiting for stock
    settings.KAMI_BASE_URL = live_server.url
    enable_sandbox()
    product = make_product("gift-card", name="Gift card 100")
    order, token = awaiting_stock_order(product)
    page = browser.new_context(locale="en-US").new_page()
    stopped_clock(page)
    asks = status_asks(page)
    page.goto(f"{live_server.url}/orders/{order.order_no}?token={token}")
    assert "We are restocking" in page.inner_text("#status")
    # when the merchant restocks the product (the CLI: keys, then the backfill that fulfils the order)
    call_command("keys", "generate", product.slug, "--count", "1", stdout=StringIO(), stderr=StringIO())
    order.refresh_from_db()
    assert order.status == Order.Status.FULFILLED
    # then the page asks again after 15 s, not sooner, and reloads itself with the key
    page.clock.run_for(14_000)
    assert asks == [] and page.locator("code.key").count() == 0
    page.clock.run_for(1_000)
    page.wait_for_selector("code.key")
    assert KEY.match(page.inner_text("code.key").strip())
    assert "Paid and delivered" in page.inner_text("#status")
    assert len(asks) == 1 and f"token={token}" in asks[0]


def test_a_tab_left_open_for_hours_asks_ever_more_rarely(browser, live_server, settings, make_product):
    # given an order that stays waiting for stock, its page open
    settings.KAMI_BASE_URL = live_server.url
    enable_sandbox()
    order, token = awaiting_stock_order(make_product())
    page = browser.new_page()
    stopped_clock(page)
    asks, answered = status_asks(page), []
    page.on("requestfinished", lambda request: answered.append(request.url) if is_ask(request) else None)
    page.goto(f"{live_server.url}/orders/{order.order_no}?token={token}")

    def asks_within(seconds: int, step: int) -> int:
        """Asks made while `seconds` pass on the page's clock, `step` seconds at a time; each ask
        answered before the clock moves on (the page sets its next ask once it has its answer,
        so a step can make one wait up to `step` seconds longer)."""
        before = len(asks)
        for _ in range(seconds // step):
            page.clock.run_for(step * 1000)
            while len(answered) < len(asks):
                page.wait_for_timeout(5)
        return len(asks) - before

    # when it stays open for three hours
    first_ten_minutes = asks_within(600, 5)
    asks_within(2 * 3600 - 600, 30)
    third_hour = asks_within(3600, 30)
    # then every 15 s at first, and from there slowing to one ask every 5 minutes
    assert 30 <= first_ten_minutes <= 40
    assert 10 <= third_hour <= 12
    assert len(asks) < 100  # 720 at a steady 15 s
    # and a tab hidden for an hour does not ask, and asks at once when it is shown again
    hidden = "Object.defineProperty(document, 'hidden', {value: %s, configurable: true})"
    page.evaluate(hidden % "true")
    assert asks_within(3600, 30) == 0
    page.evaluate(hidden % "false")
    with page.expect_request(is_ask):
        page.evaluate("document.dispatchEvent(new Event('visibilitychange'))")
