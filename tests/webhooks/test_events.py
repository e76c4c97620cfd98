"""Where the events come from: both confirm paths (the set-based statement and the ORM path on
PostgreSQL, the ORM path elsewhere), backfill, refund, flags, low stock, a key delivery that failed
— and the order of one order's events at the receiver, whatever failed in between."""
from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from kami.core import clock
from kami.delivery.worker import run_once
from kami.fulfilment.backfill import stock_added
from kami.fulfilment.confirm_sql import CONFIRM_POSTGRES
from kami.fulfilment.flag import order_flag
from kami.fulfilment.refund import order_refund
from kami.orders.models import Order
from kami.orders.services import order_create
from kami.webhooks.models import WebhookMessage
from tests.factories import add_keys
from tests.sandbox_play import sandbox_notify
from tests.webhooks.play import drain, webhook_rows

pytestmark = pytest.mark.django_db(transaction=True)


def events_of(order) -> list[str]:
    return list(WebhookMessage.objects.filter(order_id=order.pk).order_by("id").values_list("event", flat=True))


@pytest.mark.parametrize("set_based", [True, False], ids=["set-based", "orm"])
def test_both_confirm_paths_emit_paid_then_fulfilled_in_the_confirm_transaction(receiver, hook, pay, settings,
                                                                                set_based):
    # given
    if set_based and connection.vendor != "postgresql":
        pytest.skip("the set-based confirm is PostgreSQL's; the other engines run the ORM path")
    settings.KAMI_CONFIRM_SQL = set_based
    hook()
    # when
    with CaptureQueriesContext(connection) as queries:
        order = pay()
    # then: the path asked for is the one that ran, and it queued both events with the sale
    ran_statement = any(CONFIRM_POSTGRES.strip()[:80] in q["sql"] for q in queries.captured_queries)
    assert ran_statement is set_based
    assert order.status == "fulfilled"
    assert events_of(order) == ["order.paid", "order.fulfilled"]
    drain()
    assert receiver.types() == ["order.paid", "order.fulfilled"]
    assert {e["data"]["order"]["order_no"] for e in receiver.received} == {order.order_no}


def test_awaiting_stock_then_backfill_then_refund_in_order_despite_failures(receiver, hook, pay, make_product):
    # given: one key, two buyers; the receiver fails for a while
    hook()
    product = make_product(name="Steam Wallet 100")
    add_keys(product, ["KEY-1"])
    first, second = (order_create(product=product, quantity=1, email=f"b{i}@example.com", gateway="sandbox")[0]
                     for i in (1, 2))
    first = pay(order=first)
    run_once("test-worker")  # the first's events go out
    receiver.fail_with = 502
    second = pay(order=second)
    assert second.status == "awaiting_stock"
    run_once("test-worker")  # the second's order.paid fails, order.awaiting_stock waits behind it
    # when: keys arrive, the order is fulfilled, then refunded, all while the receiver still fails
    add_keys(product, ["KEY-2"])
    assert stock_added(product_id=product.pk) == 1
    clock.travel(timedelta(seconds=30))
    run_once("test-worker")
    order_refund(order_no=second.order_no, reason="changed mind", actor="test")
    receiver.fail_with = None
    drain()
    # then: each order's events arrived in the order they happened, order.paid once
    by_order = {}
    for event in receiver.received:
        by_order.setdefault(event["data"]["order"]["order_no"], []).append(event["type"])
    assert by_order[second.order_no] == ["order.paid", "order.awaiting_stock", "order.fulfilled", "order.refunded"]
    assert by_order[first.order_no] == ["order.paid", "order.fulfilled"]
    refunded = receiver.received[-1]
    assert refunded["data"]["reason"] == "changed mind" and refunded["data"]["order"]["status"] == "refunded"


def test_flags_low_stock_and_a_failed_key_delivery(receiver, hook, pay, make_product, client, settings):
    # given
    hook()
    product = make_product(name="Steam Wallet 100", low_stock=3)
    add_keys(product, ["K-1", "K-2", "K-3"])
    # when: a sale takes the stock under its threshold, staff flag that order, another is paid short
    sold = pay(product=product, keys=())
    run_once("test-worker")  # its keys are emailed before the flag (a flagged order's keys are not sent)
    order_flag(order_no=sold.order_no, reason="buyer disputes", actor="staff")
    short = order_create(product=product, quantity=1, email="b@example.com", gateway="sandbox")[0]
    assert sandbox_notify(client, order_no=short.order_no, amount="0.01").status_code == 200
    drain()
    # then
    types = receiver.types()
    assert types.count("stock.low") == 1 and types.count("order.flagged") == 2
    low = next(e for e in receiver.received if e["type"] == "stock.low")
    assert low["data"] == {"product": product.slug, "product_name": "Steam Wallet 100", "left": 2, "threshold": 3}
    flags = {e["data"]["order"]["order_no"]: e["data"]["reason"] for e in receiver.received if e["type"] == "order.flagged"}
    assert flags == {sold.order_no: "staff", short.order_no: "amount_mismatch"}
    assert Order.objects.get(pk=short.pk).status == "flagged"
    # when: an order's key email cannot be sent and gives up
    settings.KAMI_DELIVERY_BACKOFF = []
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT, settings.EMAIL_TIMEOUT = "127.0.0.1", 9, 2
    clock.travel(None)
    failed = pay(product=product, keys=())
    drain()
    # then
    [event] = [e for e in receiver.received if e["type"] == "delivery.failed"]
    assert event["data"]["order"]["order_no"] == failed.order_no
    assert event["data"]["delivery"]["kind"] == "order_keys" and event["data"]["delivery"]["channel"] == "email"


def test_only_the_events_an_endpoint_wants_and_nothing_for_a_disabled_one(receiver, hook, pay):
    # given
    hook(events=["order.fulfilled"])
    hook(events=["order.paid"], enabled=False)
    # when
    pay()
    # then
    assert list(webhook_rows().values_list("payload__event", flat=True)) == ["order.fulfilled"]


def test_a_shop_without_endpoints_does_not_read_their_table_on_each_confirm(hook, pay, make_product):
    # given: a shop with no endpoint, whose first confirm has looked
    product = make_product(name="Steam Wallet 100")
    add_keys(product, ["KEY-1", "KEY-2", "KEY-3"])
    pay(product=product, quantity=1)
    # when: the next confirm runs
    with CaptureQueriesContext(connection) as queries:
        second = pay(product=product, quantity=1)
    # then: it did not read the endpoints' table
    assert second.status == "fulfilled"
    assert not [q for q in queries.captured_queries if "webhooks_endpoint" in q["sql"]]
    # and an endpoint made in this process is used by the very next confirm
    hook()
    third = pay(product=product, quantity=1)
    assert events_of(third) == ["order.paid", "order.fulfilled"]
