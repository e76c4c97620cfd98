"""Refunds: give the buyer their money back and take the keys out of circulation.

    1. short transaction: lock the order, check it was paid, record `refund_started`
    2. the gateway's refund API, outside any transaction (or nothing: a manual refund)
    3. short transaction: order `refunded`, its keys voided — never sold again —, the buyer
       emailed (outbox), the audit log written

The refund number is derived from the order, so asking twice never refunds twice at a gateway
that honours idempotency keys (all of ours with a refund API do).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db import transaction

from kami.audit.services import audit_record
from kami.core import clock
from kami.core.errors import BadInput, KamiError, NotFound
from kami.delivery.services import outbox_enqueue
from kami.fulfilment.checkout import order_info
from kami.orders.locks import orders_for_update
from kami.orders.models import Order, OrderKey
from kami.orders.services import order_event
from kami.payments.models import Payment
from kami.payments.registry import gateway_get
from kami.stock.models import Key
from kami.webhooks.events import order_event_emit

log = logging.getLogger("kami.refund")
REFUNDABLE = (Order.Status.FULFILLED, Order.Status.AWAITING_STOCK, Order.Status.AWAITING_MANUAL, Order.Status.FLAGGED)


@dataclass(frozen=True)
class RefundOutcome:
    order_no: str
    manual: bool  # True: no gateway refund API was used; the merchant pays the buyer back by hand
    keys_voided: int
    gateway_ref: str = ""


def order_refund(*, order_no: str, reason: str = "", actor: str = "cli", ip: str = "") -> RefundOutcome:
    order, payment = _refund_start(order_no, actor)
    manual, gateway_ref = True, ""
    try:
        gateway = gateway_get(payment.gateway, require_enabled=False)
    except NotFound:
        gateway = None
    if gateway is not None and gateway.supports_refund:
        # Network call: no transaction is open here (invariant 8). Failures propagate; the order
        # stays as it was and the merchant can run the refund again with the same refund number.
        result = gateway.refund(order=order_info(order), trade_no=payment.trade_no, amount=payment.amount,
                                refund_no=f"R{order.order_no}", reason=reason)
        manual, gateway_ref = False, result.gateway_ref
    voided = _refund_finish(order.pk, reason=reason, manual=manual, gateway_ref=gateway_ref, actor=actor, ip=ip)
    return RefundOutcome(order_no=order.order_no, manual=manual, keys_voided=voided, gateway_ref=gateway_ref)


def _refund_start(order_no: str, actor: str) -> tuple[Order, Payment]:
    with transaction.atomic():  # check and mark under the order lock, then let go before the gateway call
        order = orders_for_update().filter(order_no=order_no).first()
        if order is None:
            raise NotFound(f"no order {order_no!r}")
        if order.status == Order.Status.REFUNDED:
            raise BadInput(f"order {order_no} is already refunded")
        payment = Payment.objects.filter(order=order).order_by("id").first()
        if order.status not in REFUNDABLE or payment is None:
            raise BadInput(f"order {order_no} is {order.status} and was never paid: there is nothing to refund")
        order_event(order=order, kind="refund_started", actor=actor, gateway=payment.gateway)
    return order, payment


def _refund_finish(order_id: int, *, reason: str, manual: bool, gateway_ref: str, actor: str, ip: str) -> int:
    with transaction.atomic():  # order refunded, keys voided, buyer told, audit written: together
        order = Order.objects.select_for_update().get(pk=order_id)
        if order.status == Order.Status.REFUNDED:
            return 0  # a concurrent refund of the same order finished first
        order.status = Order.Status.REFUNDED
        order.save(update_fields=["status"])
        # Unique keys the buyer received are revoked for good; a reusable key stays on sale for others.
        key_ids = OrderKey.objects.filter(order=order, exclusive_key__isnull=False).values_list("key_id", flat=True)
        voided = Key.objects.filter(id__in=list(key_ids)).update(status=Key.Status.VOID, void_reason="refunded")
        order_event(order=order, kind="refunded", manual=manual, gateway_ref=gateway_ref, reason=reason,
                    keys_voided=voided)
        outbox_enqueue(kind="order_refunded", channel="email", target=order.email,
                       dedupe_key=f"order_refunded:{order.pk}:email", payload={"order_id": order.pk, "reason": reason})
        order_event_emit(event="order.refunded", order=order, reason=reason, manual=manual, keys_voided=voided)
        audit_record(actor=actor, action="order.refund", obj_type="order", obj_id=order.order_no, ip=ip,
                     manual=manual, keys_voided=voided, reason=reason)
    return voided


def refund_stale_awaiting() -> int:
    """Refund orders awaiting stock longer than KAMI_AUTO_REFUND_AFTER_HOURS (0: off, the default)."""
    hours = settings.KAMI_AUTO_REFUND_AFTER_HOURS
    if not hours:
        return 0
    cutoff = clock.now() - timedelta(hours=hours)
    refunded = 0
    stale = Order.objects.filter(status=Order.Status.AWAITING_STOCK, paid_at__lt=cutoff).values_list("order_no", flat=True)
    for order_no in list(stale[:100]):
        try:
            order_refund(order_no=order_no, reason=f"out of stock for more than {hours} h", actor="auto-refund")
            refunded += 1
        except KamiError as exc:
            log.warning("auto-refund of %s failed: %s", order_no, exc)
    return refunded
