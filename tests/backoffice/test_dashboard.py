"""The dashboard: sales per local day and currency (refunds out), orders by status, stock with
low stock marked, the queues that need a person — from seeded orders, through the real page."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone as dt_timezone
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from kami.backoffice.dashboard import dashboard_get, day_starts
from kami.core import clock
from kami.delivery.heartbeats import heartbeat_start, heartbeat_stop
from kami.delivery.models import OutboxMessage
from kami.delivery.selectors import deliveries_list
from kami.orders.models import Order
from tests.backoffice.staffing import admin_url, signed_in
from tests.factories import add_keys, make_orders

pytestmark = pytest.mark.django_db

SHANGHAI = ZoneInfo("Asia/Shanghai")
NOW = datetime(2026, 11, 27, 10, 0, tzinfo=SHANGHAI)  # 02:00 UTC: "today" began at 16:00 UTC yesterday


def utc(*args) -> datetime:
    return datetime(*args, tzinfo=dt_timezone.utc)


def paid(order: Order, at: datetime, status: str = Order.Status.FULFILLED) -> None:
    Order.objects.filter(pk=order.pk).update(status=status, paid_at=at)


def stocked(make_product, keys: int = 40, **fields):
    product = make_product(**fields)
    add_keys(product, [f"{product.slug}-{i}" for i in range(keys)])
    return product


@pytest.fixture
def shanghai(settings):
    settings.TIME_ZONE = "Asia/Shanghai"


def test_today_is_the_shop_time_zones_day(shanghai, make_product):
    # given orders paid either side of local midnight (16:00 UTC), a refund, an unpaid order
    product = stocked(make_product, price=Decimal("10.00"))
    just_today, just_yesterday, refunded, unpaid, old = make_orders(product, [1, 2, 3, 4, 5])
    paid(just_today, utc(2026, 11, 26, 16, 0, 30))  # 00:00:30 in Shanghai on the 27th
    paid(just_yesterday, utc(2026, 11, 26, 15, 59, 59))  # 23:59:59 on the 26th
    paid(refunded, utc(2026, 11, 27, 1, 0), status=Order.Status.REFUNDED)
    paid(old, utc(2026, 10, 28, 15, 59, 59))  # the 28th of October, local: 31 days ago, outside
    # when the dashboard is read at 10:00 local
    board = dashboard_get(now=NOW)
    # then each order lands on its local day; refunds and unpaid orders are no sales
    (sales,) = board.sales
    assert sales.currency == "CNY"
    assert board.days[-1].isoformat() == "2026-11-27" and board.days[0].isoformat() == "2026-10-29"
    assert (sales.today, sales.orders_today) == (Decimal("10.00"), 1)
    assert sales.amounts[-2] == Decimal("20.00")
    assert (sales.week, sales.orders_week) == (Decimal("30.00"), 2)
    assert (sales.month, sales.orders_month) == (Decimal("30.00"), 2)


def test_seven_and_thirty_days_and_currencies_apart(shanghai, make_product):
    cny = stocked(make_product, price=Decimal("10.00"))
    usd = stocked(make_product, price=Decimal("3.50"), currency="USD")
    a, b, c = make_orders(cny, [1, 1, 1])
    (d,) = make_orders(usd, [2])
    paid(a, NOW - timedelta(days=6))  # inside the 7 days (today and the six before)
    paid(b, NOW - timedelta(days=7))  # outside the 7, inside the 30
    paid(c, NOW - timedelta(days=29))  # the first day of the 30
    paid(d, NOW - timedelta(hours=1), status=Order.Status.AWAITING_STOCK)  # paid, waiting: still a sale
    board = dashboard_get(now=NOW)
    cny_sales, usd_sales = board.sales
    assert (cny_sales.currency, usd_sales.currency) == ("CNY", "USD")
    assert (cny_sales.today, cny_sales.week, cny_sales.month) == (0, Decimal("10.00"), Decimal("30.00"))
    assert (usd_sales.today, usd_sales.month) == (Decimal("7.00"), Decimal("7.00"))
    assert cny_sales.amounts[0] == Decimal("10.00")


def test_day_starts_follow_a_daylight_saving_change(settings):
    settings.TIME_ZONE = "Europe/Berlin"
    starts = day_starts(now=datetime(2026, 3, 30, 12, 0, tzinfo=ZoneInfo("Europe/Berlin")), days=2)
    # the 29th of March 2026 has 23 hours in Berlin
    assert [s.astimezone(dt_timezone.utc).hour for s in starts] == [23, 22, 22]
    assert starts[1].astimezone(dt_timezone.utc) - starts[0].astimezone(dt_timezone.utc) == timedelta(hours=23)


def test_orders_by_status_stock_and_queues(shanghai, make_product):
    product = make_product(low_stock=5)
    plenty = make_product(low_stock=2)
    quiet = make_product()
    add_keys(quiet, ["Q-1"])
    type(quiet).objects.filter(pk=quiet.pk).update(active=False)
    manual = make_product(kind="manual")
    add_keys(product, [f"K-{i}" for i in range(3)])
    add_keys(plenty, [f"P-{i}" for i in range(4)])
    orders = make_orders(product, [1, 1, 1, 1])
    paid(orders[0], NOW, status=Order.Status.AWAITING_STOCK)
    paid(orders[1], NOW, status=Order.Status.AWAITING_STOCK)
    (waiting_manual,) = make_orders(manual, [1])
    paid(waiting_manual, NOW, status=Order.Status.AWAITING_MANUAL)
    Order.objects.filter(pk=orders[2].pk).update(status=Order.Status.EXPIRED)
    # one failed row with attempts left (retrying), one past the schedule (failed), two manual
    for i, (status, attempts) in enumerate([("failed", 1), ("failed", 99), ("manual", 7), ("manual", 7), ("sent", 1),
                                            ("handled", 7)]):
        OutboxMessage.objects.create(kind="order_keys", channel="email", target="b@example.com", dedupe_key=f"d{i}",
                                     status=status, attempts=attempts, next_attempt_at=NOW, created_at=NOW)
    board = dashboard_get(now=NOW)
    assert dict(board.orders_by_status) == {"pending": 1, "fulfilled": 0, "awaiting_stock": 2, "awaiting_manual": 1,
                                            "expired": 1, "refunded": 0, "flagged": 0}
    assert (board.awaiting_stock, board.awaiting_manual) == (2, 1)
    assert (board.deliveries_manual, board.deliveries_retrying) == (2, 1)
    # "failed" is the queue's own tab, counted by the same selector (it may or may not hold the retrying row)
    assert board.deliveries_failed == len(deliveries_list(status="failed")) and board.deliveries_failed >= 1
    rows = {row.product.slug: row for row in board.stock}
    assert set(rows) == {product.slug, plenty.slug}  # inactive and manual products hold no stock to watch
    assert rows[product.slug].low and rows[product.slug].available == 3 and rows[product.slug].awaiting == 2
    assert not rows[plenty.slug].low
    assert board.low_stock == 1
    assert quiet.slug not in rows


def test_the_query_count_does_not_grow_with_orders(shanghai, make_product):
    product = stocked(make_product)
    for order in make_orders(product, [1, 1]):
        paid(order, NOW)
    with CaptureQueriesContext(connection) as few:
        dashboard_get(now=NOW)
    for i, order in enumerate(make_orders(product, [1] * 30)):
        paid(order, NOW - timedelta(days=i % 30))
    with CaptureQueriesContext(connection) as many:
        dashboard_get(now=NOW)
    assert len(many) == len(few) <= 11  # 3 of them: the delivery workers' card (delivery_health)


def test_the_page_per_role(make_product):
    product = stocked(make_product, keys=3, low_stock=5, name="Steam 50")
    (order,) = make_orders(product, [2])
    paid(order, clock.now())
    owner, operator, support = (signed_in(role, f"{role}-dash") for role in ("owner", "operator", "support"))
    for client in (owner, operator):
        page = client.get(admin_url())
        html = page.content.decode()
        assert page.status_code == 200
        assert 'id="dashboard"' in html and "chart-sales" in html and "chart-status" in html
        assert "<rect" in html and 'class="bo-low"' in html and "Steam 50" in html
        assert "59.80" in html
        assert "style=" not in html.split('id="dashboard"')[1].split("</section>")[0]
    page = support.get(admin_url())
    assert page.status_code == 200
    html = page.content.decode()
    assert 'id="dashboard"' not in html and "59.80" not in html
    assert admin_url("deliveries/") in html  # support reads the delivery queue, linked from the index


def test_the_index_links_only_to_pages_the_role_may_open():
    owner, operator = signed_in("owner", "o-links"), signed_in("operator", "op-links")
    owner_html, operator_html = (c.get(admin_url()).content.decode() for c in (owner, operator))
    for page in ("deliveries/", "gateways/", "shop/"):
        assert admin_url(page) in owner_html
    assert admin_url("deliveries/") in operator_html
    assert admin_url("gateways/") not in operator_html and admin_url("shop/") not in operator_html


def workers_card(client, language: str = "en") -> str:
    html = client.get(admin_url(), HTTP_ACCEPT_LANGUAGE=language).content.decode()
    return html.split('id="workers"')[1].split("</div>")[0]


def test_the_dashboard_says_when_no_worker_runs_and_what_waits():
    owner = signed_in("owner", "dash-workers")
    # given a new shop: no worker ever
    card = workers_card(owner)
    assert "None has run on this shop yet." in card and "start kami worker" in card
    assert 'class="last-attempt">never<' in card
    # when a worker runs
    heartbeat_start("w-dash")
    card = workers_card(owner)
    # then the card is calm
    assert "1 running" in card and "start kami worker" not in card
    html = owner.get(admin_url()).content.decode()
    assert 'bo-card bo-attention" id="workers"' not in html
    # when it stopped and a key email has waited ten minutes past its time
    heartbeat_stop("w-dash")
    now = clock.now()
    OutboxMessage.objects.create(kind="order_keys", channel="email", target="b@x.test", dedupe_key="dash-due",
                                 next_attempt_at=now - timedelta(minutes=10), created_at=now - timedelta(minutes=10))
    card = workers_card(owner)
    # then it says so, with the way out
    assert "None running: the last one was seen" in card
    assert "1 delivery due for 10" in card and "minutes and not sent." in card
    assert "start kami worker" in card
    html = owner.get(admin_url()).content.decode()
    assert 'bo-card bo-attention" id="workers"' in html
    # and in Chinese
    card = workers_card(owner, "zh-hans")
    assert "没有在运行的发货进程" in card and "仍未发出" in card and "kami worker" in card


def test_a_worker_that_beats_but_does_not_deliver_is_still_attention():
    owner = signed_in("owner", "dash-stuck")
    heartbeat_start("w-stuck")
    now = clock.now()
    OutboxMessage.objects.create(kind="order_keys", channel="email", target="b@x.test", dedupe_key="stuck-due",
                                 next_attempt_at=now - timedelta(minutes=5), created_at=now - timedelta(minutes=5))
    card = workers_card(owner)
    assert "1 running" in card and "1 delivery due for 5" in card
    assert 'bo-card bo-attention" id="workers"' in owner.get(admin_url()).content.decode()
