"""Whether the buyer's order page keeps following its order, and how often it asks.

The page follows an order while its status will change without the buyer doing anything, so
that what the page promises ("your keys will appear here") happens on the open page:

- `pending`: the gateway's notification (seconds), or the sweep expiring it;
- `awaiting_stock`: the restock backfill or the worker's sweep fulfils it (or auto-refunds it);
- `awaiting_manual`: staff deliver it by hand;
- `flagged`: staff unflag it (back to awaiting stock or fulfilled), deliver it or refund it.

It stops at the final states: `fulfilled` (the keys are on the page; a later replacement or
refund is emailed) and `refunded`. An `expired` order is followed gently for LATE_PAYMENT_WINDOW
after its expiry: a buyer who paid at the last moment has a payment whose notification is still
on its way (a gateway retries for minutes to hours), and it flags the order, which the page then
says ("we are checking this payment"). After that it is final too.

A paid order can wait for hours, so it is asked about gently: every 15 s rather than the 3 s of a
payment, and the script (static/storefront/status.js) backs off from there on a tab left open. The
<noscript> meta refresh cannot back off by itself, so the server slows it instead once the order
has waited an hour.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from kami.orders.models import Order

S = Order.Status
PAYMENT_EVERY = 3  # seconds: a gateway's notification usually follows within seconds
WAITING = (S.AWAITING_STOCK, S.AWAITING_MANUAL, S.FLAGGED)
WAITING_EVERY = 15
WAITING_NOSCRIPT = 30  # a whole page each time, not a small JSON answer: half as often
LONG_WAIT = timedelta(hours=1)
LONG_WAIT_NOSCRIPT = 300
LATE_PAYMENT_WINDOW = timedelta(minutes=30)  # an expired order's page keeps asking this long after its expiry


@dataclass(frozen=True)
class Follow:
    every: int  # seconds between the script's asks, before it backs off
    noscript: int  # seconds of the <noscript> meta refresh


def order_follow(*, order: Order, now: datetime) -> Follow | None:
    """How the order page follows `order`; None once its status is final."""
    if order.status == S.PENDING:
        return Follow(every=PAYMENT_EVERY, noscript=PAYMENT_EVERY)
    if order.status == S.EXPIRED:
        expired_at = order.expires_at or order.created_at
        late = expired_at is not None and now - expired_at < LATE_PAYMENT_WINDOW
        return Follow(every=WAITING_EVERY, noscript=WAITING_NOSCRIPT) if late else None
    if order.status not in WAITING:
        return None
    waited = now - (order.paid_at or order.created_at)
    return Follow(every=WAITING_EVERY, noscript=LONG_WAIT_NOSCRIPT if waited >= LONG_WAIT else WAITING_NOSCRIPT)
