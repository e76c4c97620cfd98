"""Confirming one order never waits for another order of the same product (PostgreSQL, MariaDB).

Each order's confirm locks its own order row and the keys it claims, never the product row:
while order B's confirm transaction is still open on one connection, order A's confirm on a
second connection claims other keys (SKIP LOCKED) and commits at once. A product lock would
make every confirmation of a drop queue behind the previous commit.
"""
from __future__ import annotations

import threading
import uuid
from decimal import Decimal

import pytest
from django.db import connection, transaction

from kami.fulfilment.confirm import Outcome, order_fulfil_from_stock, payment_confirm
from kami.orders.models import Order, OrderKey
from kami.payments.interface import Notice
from tests.factories import add_keys, make_orders

pytestmark = [pytest.mark.concurrency, pytest.mark.django_db(transaction=True)]


def paid(order: Order) -> Notice:
    return Notice(order_no=order.order_no, trade_no=f"T-{uuid.uuid4().hex[:12]}", amount=order.amount,
                  currency=order.currency, paid=True)


def short_lock_wait() -> None:
    """Fail fast instead of queueing: a lock wait here is the bug under test."""
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SET lock_timeout = '3s'")
        else:
            cursor.execute("SET SESSION innodb_lock_wait_timeout = 3")


def hold_confirm_open(notice: Notice, confirmed: threading.Event, release: threading.Event, outcome: list) -> None:
    """Confirm `notice` inside a transaction that stays open until `release` is set."""
    try:
        with transaction.atomic():  # the open transaction of order B: its locks are held until release
            outcome.append(payment_confirm(gateway="sandbox", notice=notice))
            confirmed.set()
            release.wait(timeout=30)
    finally:
        confirmed.set()
        connection.close()


@pytest.mark.parametrize("what", ["confirm", "backfill"])
def test_confirming_order_a_does_not_wait_for_order_b_of_the_same_product(make_product, server_db, what):
    # given: two pending orders of one product, keys for both
    product = make_product(price=Decimal("10.00"))
    add_keys(product, [f"LOCK-{i}" for i in range(4)])
    order_a, order_b = make_orders(product, [1, 1])
    confirmed, release, outcome_b = threading.Event(), threading.Event(), []
    holder = threading.Thread(target=hold_confirm_open, args=(paid(order_b), confirmed, release, outcome_b))
    holder.start()
    try:
        assert confirmed.wait(timeout=30)
        assert outcome_b == [Outcome.FULFILLED]
        # when: order A is confirmed on this connection while B's transaction is still open
        short_lock_wait()
        if what == "confirm":
            fulfilled_a = payment_confirm(gateway="sandbox", notice=paid(order_a)) == Outcome.FULFILLED
        else:  # a paid order waiting for stock, served by the restock backfill
            Order.objects.filter(pk=order_a.pk).update(status=Order.Status.AWAITING_STOCK)
            fulfilled_a = order_fulfil_from_stock(order_id=order_a.pk)
    finally:
        release.set()
        holder.join()
    # then: A was fulfilled without waiting, with a key B did not take
    assert fulfilled_a
    keys = list(OrderKey.objects.filter(order__in=[order_a, order_b]).values_list("key_id", flat=True))
    assert len(keys) == len(set(keys)) == 2
