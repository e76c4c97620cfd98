"""Resending an order's keys by staff: crosses orders (lock, state check, event) and delivery
(a new outbox row), so it lives in fulfilment (DESIGN.md section 3). Nothing is sent here: the
worker performs the row after commit."""
from __future__ import annotations

from django.db import transaction

from kami.audit.services import audit_record
from kami.core.errors import BadInput, NotFound
from kami.delivery.models import OutboxMessage
from kami.delivery.services import order_keys_enqueue
from kami.orders.models import Order
from kami.orders.services import order_event

_RESEND_HINTS = {
    Order.Status.AWAITING_STOCK: " (import keys or fulfil it by hand first)",
    Order.Status.REFUNDED: " (its keys were revoked by the refund)",
    Order.Status.PENDING: " (it is not paid)",
}


def order_delivery_resend(*, order_id: int, actor: str, ip: str = "") -> OutboxMessage:
    """Queue a new key email for a fulfilled order (dedupe key `order_keys:<id>:resend:<n>`), with
    its own Message-ID. The earlier deliveries are left as they are."""
    with transaction.atomic():  # the order lock serialises resends of one order, so each takes the next number
        order = Order.objects.select_for_update().filter(id=order_id).first()
        if order is None:
            raise NotFound(f"no order with id {order_id}")
        if order.status != Order.Status.FULFILLED:
            raise BadInput(f"order {order.order_no} is {order.status}, not fulfilled: it has no keys to resend"
                           f"{_RESEND_HINTS.get(order.status, '')}")
        if not order.email:
            raise BadInput(f"order {order.order_no} has no email address (it was made in the Telegram bot without "
                           "one): its keys are on its order page and were sent to its Telegram chat")
        n = OutboxMessage.objects.filter(dedupe_key__startswith=f"order_keys:{order.pk}:resend:").count() + 1
        row = order_keys_enqueue(order_id=order.pk, email=order.email, resend=n)
        order_event(order=order, kind="delivery_resent", message_id=row.pk, actor=actor)
        audit_record(actor=actor, action="order.resend_delivery", obj_type="order", obj_id=order.order_no, ip=ip,
                     message_id=row.pk, resend=n)
    return row
