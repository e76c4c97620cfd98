"""A coupon's use is counted when the order is paid (issue 16): unpaid orders cannot drain a limited
coupon, a paid order whose coupon ran out meanwhile is held for a person (paid, recorded, alerted
once, nothing delivered), and staff refund it or deliver it anyway. The limit is never exceeded."""
from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.core.management import call_command
from django.test import Client
from django.utils import translation

from kami.catalog.coupons import CouponRefused, coupon_create
from kami.catalog.models import Coupon
from kami.core import clock
from kami.delivery.models import OutboxMessage
from kami.fulfilment.flag import order_unflag
from kami.fulfilment.refund import order_refund
from kami.orders.models import Order, OrderEvent
from kami.orders.services import order_create, orders_expire
from kami.payments.models import Notification, Payment
from kami.stock.models import Key
from tests.factories import add_keys
from tests.sandbox_play import enable_sandbox, sandbox_notify

pytestmark = pytest.mark.django_db(transaction=True)


def buy(product, email, code="ONCE", quantity=1):
    return order_create(product=product, quantity=quantity, email=email, gateway="sandbox", coupon=code)[0]


def pay(order, amount=None):
    return sandbox_notify(Client(), order_no=order.order_no, amount=str(amount or order.amount))


def used(code="ONCE") -> int:
    return Coupon.objects.get(code=code).used


@pytest.fixture
def shop(make_product):
    enable_sandbox()
    product = make_product(price=Decimal("10.00"))
    add_keys(product, [f"CU-{i}" for i in range(6)])
    coupon_create(code="ONCE", kind="percent", value="50", usage_limit=1, actor="owner")
    return product


def test_unpaid_orders_cannot_drain_a_limited_coupon(shop):
    # given a one-use coupon and five buyers who order with it and do not pay
    unpaid = [buy(shop, f"idle{i}@example.com") for i in range(5)]
    # then none of them took the use, and another buyer can still check out with it
    assert used() == 0 and all(o.coupon.code == "ONCE" and o.amount == Decimal("5.00") for o in unpaid)
    payer = buy(shop, "payer@example.com")
    # when that buyer pays
    assert pay(payer).content == b"ok"
    # then the use is theirs, and checkout now refuses the coupon
    assert (Order.objects.get(pk=payer.pk).status, used()) == ("fulfilled", 1)
    with translation.override("en"), pytest.raises(CouponRefused, match="used up"):
        buy(shop, "late@example.com")


def test_a_paid_order_whose_coupon_ran_out_is_held_for_a_person(shop):
    # given two orders with the one-use coupon; the first is paid
    first, second = buy(shop, "a@example.com"), buy(shop, "b@example.com")
    pay(first)
    # when the second is paid too
    response = pay(second)
    # then the payment is acknowledged and recorded, but nothing is delivered and the limit holds
    assert response.content == b"ok"
    held = Order.objects.get(pk=second.pk)
    assert (held.status, held.flag_reason, used()) == ("flagged", "coupon_used_up", 1)
    assert held.paid_at is not None and Payment.objects.filter(order=held).count() == 1
    assert not held.order_keys.exists() and Key.objects.filter(status="sold").count() == 1
    event = held.events.get(kind="flagged")
    assert (event.detail["reason"], event.detail["previous"], event.detail["coupon"]) == (
        "coupon_used_up", "awaiting_stock", "ONCE")
    assert "used up at payment" in event.detail["detail"]
    assert Notification.objects.get(order_no=held.order_no).result == "flagged"
    # and the merchant is alerted once, in their language, even when the gateway repeats itself
    pay(second)
    alerts = OutboxMessage.objects.filter(kind="admin_alert", payload__event="flagged")
    assert alerts.count() == 1
    assert "优惠码 ONCE" in alerts.get().payload["subject"]
    assert not OutboxMessage.objects.filter(kind="order_keys", payload__order_id=held.pk).exists()


def test_a_held_order_can_be_delivered_anyway_without_passing_the_limit(shop):
    # given a held order
    first, second = buy(shop, "a@example.com"), buy(shop, "b@example.com")
    pay(first)
    pay(second)
    # when staff unflag it (the back office's Unflag, or `kami order unflag`)
    call_command("order", "unflag", second.order_no)
    # then it is delivered from stock at once, and the coupon's count stays at its limit
    delivered = Order.objects.get(pk=second.pk)
    assert (delivered.status, delivered.order_keys.count(), used()) == ("fulfilled", 1, 1)
    assert OutboxMessage.objects.filter(kind="order_keys", payload__order_id=delivered.pk).exists()


def test_a_held_order_can_be_refunded(shop):
    # given a held order
    first, second = buy(shop, "a@example.com"), buy(shop, "b@example.com")
    pay(first)
    pay(second)
    # when
    outcome = order_refund(order_no=second.order_no, reason="coupon used up", actor="owner")
    # then
    assert (Order.objects.get(pk=second.pk).status, outcome.keys_voided, used()) == ("refunded", 0, 1)


def test_a_held_manual_order_returns_to_the_manual_queue(make_product):
    # given a manual product and its one-use coupon, used by a first payment
    enable_sandbox()
    product = make_product(price=Decimal("10.00"), kind="manual")
    coupon_create(code="ONCE", kind="percent", value="50", usage_limit=1, actor="owner")
    first, second = buy(product, "a@example.com"), buy(product, "b@example.com")
    pay(first)
    # when the second is paid, then unflagged
    pay(second)
    assert Order.objects.get(pk=second.pk).status == "flagged"
    unflagged = order_unflag(order_no=second.order_no, actor="owner")
    # then a person delivers it by hand, like any manual order
    statuses = (Order.objects.get(pk=first.pk).status, unflagged.status)
    assert statuses == ("awaiting_manual", "awaiting_manual") and used() == 1


def test_an_order_awaiting_stock_counts_its_use_at_payment(make_product):
    # given a product out of stock and a two-use coupon
    enable_sandbox()
    product = make_product(price=Decimal("10.00"))
    add_keys(product, ["ONLY-1"])
    coupon_create(code="TWO", kind="fixed", value="1", currency="CNY", usage_limit=2, actor="owner")
    first, second = buy(product, "a@example.com", "TWO"), buy(product, "b@example.com", "TWO")
    # when both are paid
    pay(first)
    pay(second)
    # then one is fulfilled, the other waits for stock, and both took their use
    statuses = {Order.objects.get(pk=first.pk).status, Order.objects.get(pk=second.pk).status}
    assert statuses == {"fulfilled", "awaiting_stock"} and used("TWO") == 2


def test_an_unlimited_coupon_counts_paid_uses_and_a_flagged_payment_counts_none(shop):
    # given an unlimited coupon and two orders with it
    coupon_create(code="ALWAYS", kind="percent", value="10", actor="owner")
    right, wrong = buy(shop, "a@example.com", "ALWAYS"), buy(shop, "b@example.com", "ALWAYS")
    # when one is paid in full and the other with the wrong amount
    pay(right)
    pay(wrong, amount="1.00")
    # then only the delivered one is counted
    assert Order.objects.get(pk=wrong.pk).flag_reason == "amount_mismatch"
    assert used("ALWAYS") == 1


def test_a_pending_order_expiring_leaves_the_count_alone(shop, settings):
    # given one paid and one abandoned order with the coupon
    paid, abandoned = buy(shop, "a@example.com"), buy(shop, "b@example.com")
    pay(paid)
    # when the abandoned one expires
    clock.travel(timedelta(minutes=settings.KAMI_ORDER_TTL_MINUTES, seconds=settings.KAMI_PAYMENT_GRACE_SECONDS + 1))
    try:
        assert orders_expire() == [abandoned.pk]
    finally:
        clock.travel(None)
    # then the paid use stays counted and nothing was "given back"
    assert used() == 1
    assert not OrderEvent.objects.filter(kind="coupon_released").exists()
