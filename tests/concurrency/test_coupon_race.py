"""A coupon with 10 uses and 50 buyers at once, each thread with its own database connection:
exactly 10 orders carry it, `used` is 10 and never more; the 40 others are refused and nothing
of theirs is written. Then the 10 orders expire unpaid and give every use back."""
from __future__ import annotations

import threading
from collections import Counter
from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connection

from kami.catalog.coupons import CouponRefused, coupon_create
from kami.catalog.models import Coupon
from kami.core import clock
from kami.orders.models import Order
from kami.orders.services import order_create, orders_expire
from tests.factories import add_keys

pytestmark = [pytest.mark.concurrency, pytest.mark.django_db(transaction=True)]

BUYERS, LIMIT = 50, 10


def race(product, buyers: int, tag: str) -> Counter:
    """`buyers` threads create an order with the coupon at the same moment; count the outcomes."""
    start, outcomes, lock = threading.Barrier(buyers), Counter(), threading.Lock()

    def buyer(i: int) -> None:
        try:
            start.wait()
            try:
                order_create(product=product, quantity=1, email=f"{tag}{i}@example.com", gateway="sandbox", coupon="RACE")
                outcome = "ordered"
            except CouponRefused as exc:
                outcome = exc.code
            except Exception as exc:  # anything else is a bug the test must show
                outcome = f"{type(exc).__name__}: {exc}"
            with lock:
                outcomes[outcome] += 1
        finally:
            connection.close()  # this thread's own connection

    threads = [threading.Thread(target=buyer, args=(i,)) for i in range(buyers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return outcomes


def test_a_limited_coupon_is_never_used_more_than_its_limit(make_product, settings):
    # given a coupon with 10 uses and 50 buyers
    product = make_product(price=Decimal("10.00"), max_qty=1)
    add_keys(product, ["RACE-KEY"])
    coupon = coupon_create(code="RACE", kind="percent", value="50", usage_limit=LIMIT, actor="test")
    # when they all order at once
    outcomes = race(product, BUYERS, "first")
    # then exactly 10 got it, the rest were told it is used up, nothing else happened
    assert outcomes == {"ordered": LIMIT, "coupon_used_up": BUYERS - LIMIT}
    coupon.refresh_from_db()
    assert coupon.used == LIMIT
    orders = Order.objects.filter(product=product)
    assert orders.count() == LIMIT and orders.filter(coupon=coupon, amount=Decimal("5.00")).count() == LIMIT
    # when all 10 expire unpaid
    clock.travel(timedelta(minutes=settings.KAMI_ORDER_TTL_MINUTES, seconds=settings.KAMI_PAYMENT_GRACE_SECONDS + 1))
    try:
        assert len(orders_expire()) == LIMIT
        coupon.refresh_from_db()
        # then every use is back, and another race again hands out exactly 10
        assert coupon.used == 0
        assert race(product, BUYERS, "second") == {"ordered": LIMIT, "coupon_used_up": BUYERS - LIMIT}
        assert Coupon.objects.get(pk=coupon.pk).used == LIMIT
    finally:
        clock.travel(None)
