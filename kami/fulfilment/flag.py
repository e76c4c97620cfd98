"""Flagging a paid order for review by hand, and unflagging it.

A flag puts the order aside: a flagged order is not backfilled, replaced or fulfilled until a
person looks at it. The status it had is kept in the `flagged` event, and unflagging returns it
there. Both are idempotent: flagging a flagged order, or unflagging one that is not, changes
nothing.
"""
from __future__ import annotations

from django.db import transaction

from kami.audit.services import audit_record
from kami.core.errors import BadInput, Conflict, NotFound
from kami.fulfilment.backfill import restock_backfill
from kami.orders.models import Order
from kami.orders.services import order_event
from kami.webhooks.events import order_event_emit

S = Order.Status
# Paid orders only: a pending one has nothing to review yet (and a payment arriving for a
# flagged order would be taken for a second payment); expired and refunded ones are closed.
NOT_FLAGGABLE = (S.PENDING, S.EXPIRED, S.REFUNDED)


def order_flag(*, order_no: str, reason: str, actor: str, ip: str = "") -> Order:
    reason = " ".join((reason or "").split())[:255]
    if not reason:
        raise BadInput("reason: say why the order needs review (it is shown with the order)")
    with transaction.atomic():  # read the status and set `flagged` under the order lock
        order = _locked(order_no)
        if order.status == S.FLAGGED:
            return order
        if order.status in NOT_FLAGGABLE:
            raise Conflict(f"order {order_no} is {order.status}: only a paid order can be flagged for review")
        previous = order.status
        order.status, order.flag_reason = S.FLAGGED, reason
        order.save(update_fields=["status", "flag_reason"])
        flagged = order_event(order=order, kind="flagged", reason="staff", detail=reason, previous=previous, actor=actor)
        order_event_emit(event="order.flagged", order=order, subject=f"event:{flagged.pk}", reason="staff", detail=reason)
        audit_record(actor=actor, action="order.flag", obj_type="order", obj_id=order_no, ip=ip, reason=reason,
                     previous=previous)
    return order


def order_unflag(*, order_no: str, actor: str, ip: str = "") -> Order:
    with transaction.atomic():  # read the flag's event and restore the status under the order lock
        order = _locked(order_no)
        if order.status != S.FLAGGED:
            return order
        flagged = order.events.filter(kind="flagged").order_by("-id").first()
        previous = (flagged.detail or {}).get("previous") if flagged else None
        if not previous:
            raise Conflict(f"order {order_no} was flagged by the payment check ({order.flag_reason or 'no reason'}) "
                           "and never got keys: refund it, or fulfil it by hand, instead of unflagging it")
        order.status, order.flag_reason = previous, ""
        order.save(update_fields=["status", "flag_reason"])
        order_event(order=order, kind="unflagged", status=previous, actor=actor)
        audit_record(actor=actor, action="order.unflag", obj_type="order", obj_id=order_no, ip=ip, status=previous)
    if previous == S.AWAITING_STOCK:
        restock_backfill(product_id=order.product_id)  # keys may have arrived while it was set aside
        order.refresh_from_db()
    return order


def _locked(order_no: str) -> Order:
    order = Order.objects.select_for_update().filter(order_no=order_no).first()
    if order is None:
        raise NotFound(f"no order {order_no!r}")
    return order
