"""A coupon's use is counted at payment (issue 16). Ten orders carry a three-use coupon and are
paid at the same moment, each notification in its own thread with its own database connection:
exactly three are delivered, seven are held for a person with the reason, `used` is 3 — never
more, never negative — and no key goes to a held order. Then a payment that loses the last use
while it already holds its keys (the coupon row locked by another payment until it commits) is
rolled back whole and held: its keys go back on sale."""
from __future__ import annotations

import threading
from collections import Counter
from decimal import Decimal

import pytest
from django.db import connection, connections, transaction
from django.test import Client
from django.utils import translation

from kami.catalog.coupons import CouponRefused, coupon_create
from kami.catalog.models import Coupon
from kami.orders.models import Order, OrderKey
from kami.orders.services import order_create
from kami.stock.models import Key
from tests.factories import add_keys
from tests.sandbox_play import enable_sandbox, sandbox_notify

pytestmark = [pytest.mark.concurrency, pytest.mark.django_db(transaction=True)]

PAYERS, LIMIT = 10, 3


def buy(product, email):
    return order_create(product=product, quantity=1, email=email, gateway="sandbox", coupon="RACE")[0]


def pay_all(orders) -> list[bytes]:
    """Every order's paid notification at the same moment, one thread and connection each."""
    start, answers, lock = threading.Barrier(len(orders)), [], threading.Lock()

    def payer(order) -> None:
        try:
            start.wait()
            body = sandbox_notify(Client(), order_no=order.order_no, amount=str(order.amount)).content
            with lock:
                answers.append(body)
        finally:
            connection.close()  # this thread's own connection

    threads = [threading.Thread(target=payer, args=(o,)) for o in orders]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return answers


def test_concurrent_payments_never_use_a_coupon_past_its_limit(make_product):
    # given ten unpaid orders with a three-use coupon (unpaid orders take no use) and keys for all
    enable_sandbox()
    product = make_product(price=Decimal("10.00"), max_qty=1)
    add_keys(product, [f"RACE-{i}" for i in range(PAYERS)])
    coupon = coupon_create(code="RACE", kind="percent", value="50", usage_limit=LIMIT, actor="test")
    orders = [buy(product, f"payer{i}@example.com") for i in range(PAYERS)]
    assert Coupon.objects.get(pk=coupon.pk).used == 0
    # when they are all paid at once
    answers = pay_all(orders)
    # then every payment was acknowledged; three delivered, seven held with the reason
    assert answers == [b"ok"] * PAYERS
    rows = Order.objects.filter(product=product)
    assert Counter(rows.values_list("status", flat=True)) == {"fulfilled": LIMIT, "flagged": PAYERS - LIMIT}
    assert set(rows.filter(status="flagged").values_list("flag_reason", flat=True)) == {"coupon_used_up"}
    assert Coupon.objects.get(pk=coupon.pk).used == LIMIT
    # and no held order got a key: exactly three are sold, each to one order
    assert Key.objects.filter(product=product, status="sold").count() == LIMIT
    assert OrderKey.objects.filter(order__status="flagged").count() == 0
    assert OrderKey.objects.filter(key__product=product).values("key").distinct().count() == LIMIT
    # and checkout now refuses the coupon
    with translation.override("en"), pytest.raises(CouponRefused, match="used up"):
        buy(product, "late@example.com")


def test_a_payment_losing_the_last_use_while_holding_keys_is_rolled_back_and_held(make_product, server_db):
    # given a coupon with one use left and an order for it; another connection is taking that use
    # right now (its UPDATE done, not committed), as a concurrent payment would
    enable_sandbox()
    product = make_product(price=Decimal("10.00"), max_qty=1)
    add_keys(product, ["LAST-1", "LAST-2"])
    coupon = coupon_create(code="RACE", kind="percent", value="50", usage_limit=2, actor="test")
    Coupon.objects.filter(pk=coupon.pk).update(used=1)
    order = buy(product, "loser@example.com")
    taken, release, done = threading.Event(), threading.Event(), []

    def rival() -> None:
        try:
            with transaction.atomic():  # the other payment's transaction: holds the coupon row
                Coupon.objects.filter(pk=coupon.pk, used__lt=2).update(used=2)
                taken.set()
                release.wait(timeout=30)
        finally:
            connections.close_all()

    def payer() -> None:
        try:
            done.append(sandbox_notify(Client(), order_no=order.order_no, amount=str(order.amount)).content)
        finally:
            connections.close_all()

    holder = threading.Thread(target=rival)
    holder.start()
    assert taken.wait(timeout=30)
    paying = threading.Thread(target=payer)
    paying.start()
    # when the payment has claimed its key and waits on the coupon row, the rival commits
    paying.join(timeout=2)
    assert paying.is_alive(), "the payment should be waiting on the coupon row the rival holds"
    release.set()
    holder.join()
    paying.join(timeout=30)
    # then the payment ran again and held the order: no key sold, the use not counted twice
    assert done == [b"ok"]
    held = Order.objects.get(pk=order.pk)
    assert (held.status, held.flag_reason) == ("flagged", "coupon_used_up")
    assert not held.order_keys.exists()
    assert Key.objects.filter(product=product, status="available").count() == 2
    assert Coupon.objects.get(pk=coupon.pk).used == 2
    assert held.events.filter(kind="paid").count() == 1  # the rolled-back run left nothing behind
