"""Emitting webhook events: one outbox row (kind `webhook_event`, channel `merchant_webhook`) and
one WebhookMessage per (event, subscribed enabled endpoint), in the caller's transaction. The
worker sends them after commit (kami.webhooks.channel).

Where events come from:
    order.paid, order.fulfilled   on_order_fulfilled: every fulfilment, both confirm paths (ORM and
                                  set-based), backfill and manual fulfilment, through
                                  kami.delivery.services.order_keys_enqueue_elsewhere
    order.paid, order.awaiting_stock, order.flagged (payment checks), stock.low, delivery.failed
                                  on_admin_alert: the merchant alerts raised for those
    order.refunded                kami.fulfilment.refund (order_event_emit)
    order.flagged (by staff)      kami.fulfilment.flag (order_event_emit)

Payloads hold the order's fields as they were at the event (no key text: the channel reads keys
when it sends, and only for endpoints that opted in). A dedupe key per (endpoint, event, subject)
makes every emission safe to repeat: the same event is queued once per endpoint.
"""
from __future__ import annotations

import hashlib
import time
from datetime import datetime

from django.conf import settings
from django.db import transaction
from django.db.models.signals import post_delete, post_migrate, post_save
from django.dispatch import receiver

from kami.core import clock
from kami.delivery.services import outbox_enqueue
from kami.orders.models import Order, OrderEvent
from kami.webhooks.models import Endpoint, WebhookMessage
from kami.webhooks.signing import msg_id_new

KIND, CHANNEL = "webhook_event", "merchant_webhook"
# The order events after which a payment has been announced (order.paid went out with them).
PAID_ANNOUNCED_BY = ("awaiting_stock", "awaiting_manual")


# Every confirm asks for endpoints, and most shops have none. "None is enabled" is kept for
# KAMI_WEBHOOK_CACHE_SECONDS per process, so the confirm transaction does not read the table each
# time. A save of an endpoint in this process forgets it at once and again at commit; another
# process (a second web process, the worker) sees a new endpoint within the TTL. Only "none" is
# kept: once one is enabled every confirm reads the table, so nothing stale is ever sent to.
_none_until = [0.0]


def _none_enabled() -> bool:
    if _none_until[0] > time.monotonic():
        return True
    if Endpoint.objects.filter(enabled=True).exists():
        return False
    _none_until[0] = time.monotonic() + settings.KAMI_WEBHOOK_CACHE_SECONDS
    return True


def endpoints_cache_clear() -> None:
    def clear() -> None:
        _none_until[0] = 0.0
    clear()
    transaction.on_commit(clear)


@receiver(post_save, sender=Endpoint)
@receiver(post_delete, sender=Endpoint)
@receiver(post_migrate)
def _forget(**kwargs) -> None:
    endpoints_cache_clear()


def endpoints_for(*events: str) -> list[Endpoint]:
    """Enabled endpoints that want any of `events`: one read of a small table (none while the
    process knows that no endpoint is enabled)."""
    if _none_enabled():
        return []
    wanted = set(events)
    return [e for e in Endpoint.objects.filter(enabled=True).order_by("id") if wanted & set(e.events or ())]


def webhook_emit(*, event: str, subject: str, data: dict, order_id: int | None = None,
                 endpoints: list[Endpoint] | None = None) -> list[WebhookMessage]:
    """Queue `event` for every enabled endpoint that wants it. `subject` names this occurrence
    (an order id, an alert's key): the same (event, subject) is queued once per endpoint."""
    now = clock.now()
    made = []
    for endpoint in (endpoints if endpoints is not None else endpoints_for(event)):
        if event not in (endpoint.events or ()):
            continue
        msg_id = msg_id_new()
        payload = {"event": event, "msg_id": msg_id, "endpoint_id": endpoint.pk, "order_id": order_id,
                   "timestamp": now.isoformat(), "data": data}
        row = outbox_enqueue(kind=KIND, channel=CHANNEL, target=f"endpoint:{endpoint.pk}",
                             dedupe_key=_dedupe_key(endpoint.pk, event, subject), payload=payload)
        if row is not None:
            made.append(WebhookMessage.objects.create(msg_id=msg_id, endpoint=endpoint, event=event, order_id=order_id,
                                                      outbox=row, created_at=now))
    return made


def order_event_emit(*, event: str, order: Order, subject: str = "", **extra) -> list[WebhookMessage]:
    """An order's event, with the order's fields (and `extra`) as its data."""
    endpoints = endpoints_for(event)
    if not endpoints:
        return []
    return webhook_emit(event=event, subject=subject or str(order.pk), data={"order": order_data(order), **extra},
                        order_id=order.pk, endpoints=endpoints)


def on_order_fulfilled(*, order_id: int, now: datetime | None = None) -> None:
    """Registered with kami.delivery (order_fulfilled_listeners_register): order.paid — unless it
    was announced when the order started waiting (stock, or a person) — then order.fulfilled."""
    endpoints = endpoints_for("order.paid", "order.fulfilled")
    if not endpoints:
        return
    order = Order.objects.select_related("product").get(pk=order_id)
    data = {"order": order_data(order)}
    if not OrderEvent.objects.filter(order_id=order_id, kind__in=PAID_ANNOUNCED_BY).exists():
        webhook_emit(event="order.paid", subject=str(order_id), data=data, order_id=order_id, endpoints=endpoints)
    webhook_emit(event="order.fulfilled", subject=str(order_id), data=data, order_id=order_id, endpoints=endpoints)


def on_admin_alert(*, event: str, dedupe_key: str, params: dict, text: str) -> None:
    """Registered with kami.delivery (admin_alert_listeners_register): the merchant alerts that are
    also webhook events. Other alerts pass by."""
    if event == "low_stock":
        data = {key: params.get(key) for key in ("product", "product_name", "left", "threshold")}
        webhook_emit(event="stock.low", subject=dedupe_key, data=data)
        return
    wanted = {"awaiting_stock": ("order.paid", "order.awaiting_stock"), "awaiting_manual": ("order.paid",),
              "flagged": ("order.flagged",), "delivery_manual": ("delivery.failed",)}.get(event)
    if not wanted or not params.get("order_no") or not endpoints_for(*wanted):
        return
    order = Order.objects.select_related("product").filter(order_no=params["order_no"]).first()
    if order is None:
        return
    if event == "flagged":
        order_event_emit(event="order.flagged", order=order, subject=dedupe_key, reason=text.partition(".")[2] or "")
    elif event == "delivery_manual":
        order_event_emit(event="delivery.failed", order=order, subject=dedupe_key,
                         delivery={"id": params.get("message_id"), "kind": params.get("kind"),
                                   "channel": params.get("channel"), "attempts": params.get("attempts"),
                                   "error": params.get("error")})
    else:
        for name in wanted:
            order_event_emit(event=name, order=order)


def order_data(order: Order) -> dict:
    """What a webhook says about an order: never key text (see kami.webhooks.channel for the opt-in)."""
    def at(value):
        return value.isoformat() if value else None

    return {"order_no": order.order_no, "status": order.status, "product": order.product.slug,
            "product_name": order.product.name, "quantity": order.quantity, "amount": str(order.amount),
            "currency": order.currency, "email": order.email, "gateway": order.gateway,
            "created_at": at(order.created_at), "paid_at": at(order.paid_at), "fulfilled_at": at(order.fulfilled_at),
            "flag_reason": order.flag_reason or None}


def _dedupe_key(endpoint_id: int, event: str, subject: str) -> str:
    key = f"webhook:{endpoint_id}:{event}:{subject}"
    if len(key) > 191:
        key = f"webhook:{endpoint_id}:{event}:sha256:{hashlib.sha256(subject.encode()).hexdigest()}"
    return key
