"""Restock backfill and the periodic sweeps."""
from __future__ import annotations

import logging
from datetime import timedelta

from django.conf import settings

from kami.fulfilment.confirm import order_fulfil_from_stock
from kami.fulfilment.reconcile import close_at_gateways, reconcile_pending
from kami.fulfilment.refund import refund_stale_awaiting
from kami.orders.models import Order
from kami.orders.services import orders_expire
from kami.payments.services import notifications_prune
from kami.stock.claim import ShortClaim

log = logging.getLogger("kami.fulfilment")


def stock_added(*, product_id: int) -> int:
    """Keys were added to a product: serve its awaiting-stock orders now, not at the next sweep.
    Every edge that adds keys calls this right after the stock service returns (CLI import and
    generate, the upload job, the back office's generate page and key restore, `kami demo`):
    stock knows nothing of orders (DESIGN.md section 3). Returns how many orders were fulfilled."""
    return restock_backfill(product_id=product_id)


def restock_backfill(*, product_id: int) -> int:
    """Fulfil the product's awaiting-stock orders, first paid first served. Stops at the first
    order the stock cannot cover, so a small later order never jumps a large earlier one."""
    fulfilled = 0
    queue = Order.objects.filter(product_id=product_id, status=Order.Status.AWAITING_STOCK).order_by("paid_at", "id")
    for order_id in queue.values_list("id", flat=True).iterator():
        try:
            ok = order_fulfil_from_stock(order_id=order_id)
        except ShortClaim:
            ok = order_fulfil_from_stock(order_id=order_id, wait=True)
        if not ok:
            if Order.objects.filter(id=order_id, status=Order.Status.AWAITING_STOCK).exists():
                break  # genuinely short: later orders wait their turn
            continue  # someone else fulfilled it meanwhile
        fulfilled += 1
    return fulfilled


def sweep() -> dict:
    """The periodic sweep the worker runs: ask gateways about orders whose notification may have
    been lost, expire unpaid orders, retry awaiting-stock orders (keys added by a path that did
    not backfill), prune rejected notifications past their retention."""
    reconciled = reconcile_pending()
    products = set(Order.objects.filter(status=Order.Status.AWAITING_STOCK).values_list("product_id", flat=True))
    backfilled = sum(restock_backfill(product_id=p) for p in products)
    expired = orders_expire()
    return {"reconciled": reconciled, "expired": len(expired), "closed": close_at_gateways(expired),
            "backfilled": backfilled, "auto_refunded": refund_stale_awaiting(),
            "pruned": notifications_prune(older_than=timedelta(days=settings.KAMI_NOTIFY_REJECTED_KEEP_DAYS))}
