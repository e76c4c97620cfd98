"""Reconciliation: notifications do get lost (a CDN in front, TLS trouble, a gateway that never
retries), so the worker asks the gateway about orders still pending after a while and confirms
the paid ones through the same service a notification uses."""
from __future__ import annotations

import json
import logging
from datetime import timedelta

from django.conf import settings

from kami.core import clock
from kami.core.errors import KamiError, NotFound
from kami.fulfilment.checkout import order_info
from kami.fulfilment.confirm import payment_confirm
from kami.orders.models import Order
from kami.orders.services import payment_grace
from kami.payments.models import Notification
from kami.payments.registry import gateway_get

log = logging.getLogger("kami.reconcile")


def reconcile_pending(*, limit: int = 200) -> int:
    """Query the gateway for pending orders older than KAMI_RECONCILE_AFTER_MINUTES (default 5)
    and still within their payment window; return how many were confirmed this way."""
    now = clock.now()
    after = timedelta(minutes=settings.KAMI_RECONCILE_AFTER_MINUTES)
    pending = (Order.objects.select_related("product")
               .filter(status=Order.Status.PENDING, created_at__lt=now - after, expires_at__gt=now - payment_grace())
               .order_by("created_at")[:limit])
    confirmed, gateways = 0, {}
    for order in pending:
        if order.gateway not in gateways:
            try:
                gateways[order.gateway] = gateway_get(order.gateway)
            except NotFound:
                gateways[order.gateway] = None
        gateway = gateways[order.gateway]
        if gateway is None:
            continue
        try:
            notice = gateway.query(order_info(order))
        except KamiError as exc:
            log.warning("reconcile %s: %s query failed: %s", order.order_no, order.gateway, exc)
            continue
        if notice is None or not notice.paid or notice.order_no != order.order_no:
            continue
        row = Notification.objects.create(
            gateway=order.gateway, received_at=clock.now(), method="QUERY", verified=True, order_no=order.order_no,
            trade_no=notice.trade_no[:128], body=json.dumps(notice.raw, ensure_ascii=False, default=str)[:65536])
        outcome = payment_confirm(gateway=order.gateway, notice=notice)
        row.result = outcome.value
        row.save(update_fields=["result"])
        confirmed += 1
        log.info("reconcile %s: confirmed by querying %s (%s)", order.order_no, order.gateway, outcome.value)
    return confirmed


def close_at_gateways(order_ids: list[int]) -> int:
    """Close the payments of orders that just expired, at gateways that can close one, so a
    buyer cannot pay an order Kami no longer honours. Failures are logged, never fatal: a payment
    that arrives anyway is flagged for refund by the confirm service."""
    closed, gateways = 0, {}
    for order in Order.objects.select_related("product").filter(id__in=order_ids):
        if order.gateway not in gateways:
            try:
                gateways[order.gateway] = gateway_get(order.gateway, require_enabled=False)
            except NotFound:
                gateways[order.gateway] = None
        gateway = gateways[order.gateway]
        if gateway is None or not gateway.supports_close:
            continue
        try:
            gateway.close(order=order_info(order))
            closed += 1
        except KamiError as exc:
            log.warning("closing %s at %s failed: %s", order.order_no, order.gateway, exc)
    return closed
