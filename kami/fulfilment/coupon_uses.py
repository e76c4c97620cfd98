"""A coupon's use is counted when its order is paid (issue 16), inside the confirm transaction and
last in its lock order — order → payment → keys → coupon — so the coupon row is locked only from
that UPDATE to the commit:

    coupon_hold(order)            before any key is claimed: a limited coupon with no use left
                                  → the paid order is flagged `coupon_used_up` for a person
    coupon_use_count(order, …)    at the end: `used = used + 1 WHERE used < usage_limit`; 0 rows
                                  (another payment took the last use after coupon_hold looked)
                                  raises CouponRaced: the confirm rolls back whole, runs again,
                                  and coupon_hold then holds the order.

The limit is never exceeded (the field lesson: check-then-decrement drove counts negative). A
held order is paid and recorded (invariant 2: flagged for review, the merchant alerted once);
staff refund it, or unflag it to deliver it anyway — it goes to awaiting_stock and is fulfilled
from stock at once (fulfilment/flag.py) — without counting a use beyond the limit.
"""
from __future__ import annotations

from django.db import DatabaseError

from kami.catalog.coupons import coupon_use_take, coupon_used_up
from kami.delivery.services import admin_alert
from kami.orders.models import Order
from kami.orders.services import order_event

REASON = "coupon_used_up"
# Outcomes of a paid order that goes on to be delivered: these count a use.
COUNTED = ("fulfilled", "awaiting_stock", "awaiting_manual")


class CouponRaced(DatabaseError):
    """Another payment took the coupon's last use while this confirm held its keys. Like a
    serialisation failure: roll the transaction back and run it again (a DatabaseError, so a caller
    that sees it escape asks the gateway to retry, as for any failed confirm)."""


def coupon_hold(order: Order) -> bool:
    """Flag the paid `order` (locked by the caller, `paid_at` set) for a person when its limited
    coupon has no use left; True when it did. A plain read of the coupon: no lock is taken here."""
    if order.coupon_id is None or not coupon_used_up(coupon_id=order.coupon_id):
        return False
    coupon = order.coupon
    # Where unflagging takes it: a key product is then fulfilled from stock, a manual one waits for staff.
    previous = Order.Status.AWAITING_STOCK if order.product.needs_keys else Order.Status.AWAITING_MANUAL
    order.status, order.flag_reason = Order.Status.FLAGGED, REASON
    order.save(update_fields=["status", "flag_reason", "paid_at"])
    order_event(order=order, kind="flagged", reason=REASON, previous=previous, coupon=coupon.code,
                detail=f"coupon {coupon.code} used up at payment ({coupon.used} of {coupon.usage_limit} uses): "
                       "refund it, or unflag it to deliver it anyway")
    admin_alert(event="flagged", dedupe_key=f"{order.order_no}:{REASON}", text=f"flagged.{REASON}",
                params={"order_no": order.order_no, "coupon": coupon.code, "limit": coupon.usage_limit})
    return True


def coupon_use_count(order: Order, *, outcome: str) -> None:
    """Count one use of `order`'s coupon when the confirm's `outcome` delivers the order (now or
    later); the last statement of the confirm transaction. Raises CouponRaced when none is left."""
    if order.coupon_id is None or outcome not in COUNTED:
        return
    if not coupon_use_take(coupon_id=order.coupon_id):
        raise CouponRaced(f"order {order.order_no}: coupon {order.coupon_id} used up by a concurrent payment")
