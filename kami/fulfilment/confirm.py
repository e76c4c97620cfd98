"""Confirm payment: the heart of Kami, one short transaction (DESIGN.md §2).

    lock order → record the trade (unique) → check money → claim keys → outbox

Returns what happened; every outcome is final and recorded, and a repeated notification finds
the trade already applied and changes nothing. Locks are taken order → payment → keys → coupon.
"""
from __future__ import annotations

import enum
import logging
from collections.abc import Callable

from django.db import OperationalError, connection, models, transaction

from kami.catalog.models import Product
from kami.core import clock, money
from kami.core.locks import deadlock_victim
from kami.delivery.services import (admin_alert, order_keys_enqueue, order_keys_enqueue_elsewhere,
                                    orders_keys_enqueue_elsewhere)
from kami.fulfilment.confirm_mariadb import confirm_mariadb, confirm_mariadb_many
from kami.fulfilment.confirm_sql import Applied, confirm_set_based, confirm_set_based_many, set_based_available
from kami.fulfilment.coupon_uses import CouponRaced, coupon_hold, coupon_use_count
from kami.fulfilment.mint.service import mint_queue
from kami.orders.locks import orders_for_update
from kami.orders.models import Order, OrderKey
from kami.orders.services import order_event, payment_grace
from kami.payments.interface import Notice
from kami.payments.models import Payment
from kami.stock.claim import ShortClaim, available_count, keys_claim

log = logging.getLogger("kami.fulfilment")
DEADLOCK_RETRIES = 3


class Outcome(str, enum.Enum):
    FULFILLED = "fulfilled"
    AWAITING_STOCK = "awaiting_stock"
    AWAITING_MANUAL = "awaiting_manual"  # a `manual` product: paid, waiting for staff (fulfilment/manual.py)
    DUPLICATE = "duplicate"  # this trade was applied before: acknowledge, change nothing
    FLAGGED = "flagged"  # money or timing does not match: a human decides
    UNKNOWN_ORDER = "unknown_order"
    WRONG_GATEWAY = "rejected"  # the sandbox paying another gateway's order, or the reverse: nothing changes


# `record(outcome)` runs inside the confirm transaction, last, and gives the row to write there with
# the outcome (or None); the confirm saves it, so it commits with the confirm: notify.py's raw
# notification row, so a confirmed notification costs one transaction. (The group commit writes a
# batch's rows in one INSERT.)
Record = Callable[[Outcome], models.Model | None]


def payment_confirm(*, gateway: str, notice: Notice, record: Record | None = None) -> Outcome:
    """Apply a verified paid notice. Safe to call any number of times, from any number of threads.
    `record`: the row to write with the outcome, in the confirm transaction (above)."""
    # Confirms of one product run side by side (each locks its order, then its keys). MariaDB can
    # still pick one of two claims as a deadlock victim (secondary-index locks of keys changing
    # status): the victim was rolled back whole, so it runs again, a few times, before the gateway
    # is asked to retry. Inside a caller's transaction it cannot: that transaction is gone too.
    retries = 0 if transaction.get_connection().in_atomic_block else DEADLOCK_RETRIES
    for _ in range(retries):
        try:
            return _confirm_claiming(gateway, notice, record)
        except OperationalError as exc:
            if not deadlock_victim(exc):
                raise
            log.info("order %s: confirm chosen as a deadlock victim; running it again", notice.order_no)
    return _confirm_claiming(gateway, notice, record)


def _confirm_claiming(gateway: str, notice: Notice, record: Record | None) -> Outcome:
    try:
        return _confirm(gateway, notice, wait=False, record=record)
    except (ShortClaim, CouponRaced):
        # SKIP LOCKED came up short while locked rows might still come free, or another payment
        # took the coupon's last use (fulfilment/coupon_uses.py): the transaction was rolled back
        # (releasing everything), so run again: claim waiting on locks before parking, or hold the order.
        return _confirm(gateway, notice, wait=True, record=record)


def _confirm(gateway: str, notice: Notice, *, wait: bool, record: Record | None) -> Outcome:
    with transaction.atomic():  # the confirm transaction: order, payment, keys, outbox (and the notification) commit together
        return payment_decide(gateway=gateway, notice=notice, wait=wait, record=record)


def payment_decide(*, gateway: str, notice: Notice, wait: bool = False, record: Record | None = None) -> Outcome:
    """One notice's whole confirm, in the caller's transaction, with no retry (ShortClaim and
    database errors go up): `_confirm` runs it alone, the group commit (kami/fulfilment/batch.py)
    runs several in one transaction. Whatever the confirm does belongs here or below, so both
    take it: the set-based confirm for the common case on PostgreSQL and MariaDB, else the ORM path."""
    outcome = (None if wait else _decide_set_based(gateway, notice)) or _decide(gateway, notice, wait=wait)
    if record is not None and (row := record(outcome)) is not None:
        row.save()
    return outcome


def payments_decide(notices: list[tuple[str, Notice]]) -> list[Outcome]:
    """Several (gateway, notice) confirms in the caller's transaction (the group commit), each with
    the outcome `payment_decide` gives it when they run one after another in this order, no retry.
    The common cases go first, together: one statement on PostgreSQL (confirm_sql's
    CONFIRM_POSTGRES_MANY), one fixed sequence on MariaDB (confirm_mariadb_many); the rest — not the
    common case, short of keys, or a second notice of an order or trade already in the statement —
    then run one by one, in order, after it and seeing what it did."""
    if not (set_based_available() and len(notices) > 1):
        return [payment_decide(gateway=gateway, notice=notice) for gateway, notice in notices]
    firsts = _firsts(notices)
    fulfilled = _decide_many_set_based(notices, firsts)
    return [Outcome.FULFILLED if i in fulfilled
            else (None if i in firsts else _decide_set_based(gateway, notice)) or _decide(gateway, notice, wait=False)
            for i, (gateway, notice) in enumerate(notices)]


def _firsts(notices: list[tuple[str, Notice]]) -> list[int]:
    """The notices that name an order and a trade no earlier notice names: the statement's input."""
    orders, trades, firsts = set(), set(), []
    for i, (gateway, notice) in enumerate(notices):
        if notice.order_no not in orders and (gateway, notice.trade_no) not in trades:
            orders.add(notice.order_no)
            trades.add((gateway, notice.trade_no))
            firsts.append(i)
    return firsts


def _decide_many_set_based(notices: list[tuple[str, Notice]], firsts: list[int]) -> set[int]:
    """CONFIRM_POSTGRES_MANY (MariaDB: confirm_mariadb_many) for `firsts`; the indexes of the
    notices it fulfilled, with what _fulfil does besides the statement's rows (deliveries besides
    email; the low-stock check, once a product: the count after the whole batch's sales)."""
    confirm = confirm_mariadb_many if connection.vendor == "mysql" else confirm_set_based_many
    applied = confirm(notices=[notices[i] for i in firsts], now=clock.now(), grace=payment_grace())
    orders_keys_enqueue_elsewhere(order_ids=[done.order_id for _, done in sorted(applied.items())])
    for product in {done.product.pk: done.product for done in applied.values()}.values():
        low_stock_check(product)
    return {firsts[n] for n in applied}


def _decide_set_based(gateway: str, notice: Notice) -> Outcome | None:
    """The common case set-based (one statement on PostgreSQL, kami/fulfilment/confirm_sql.py; a
    fixed sequence on MariaDB, confirm_mariadb.py); None when it is not the common case and
    nothing was changed: `_decide` then takes it, as the reference path."""
    if not set_based_available():
        return None
    confirm = confirm_mariadb if connection.vendor == "mysql" else confirm_set_based
    applied = confirm(gateway=gateway, notice=notice, now=clock.now(), grace=payment_grace())
    return None if applied is None else _after_set_based(applied)


def _after_set_based(applied: Applied) -> Outcome:
    """What _fulfil does besides the statement's rows: the deliveries besides email, the low-stock alert."""
    order_keys_enqueue_elsewhere(order_id=applied.order_id)
    low_stock_check(applied.product)
    return Outcome.FULFILLED


def _decide(gateway: str, notice: Notice, *, wait: bool) -> Outcome:
    """The confirm's steps, in the caller's transaction: lock order → record trade → apply."""
    order = orders_for_update().filter(order_no=notice.order_no).first()
    if order is None:
        return Outcome.UNKNOWN_ORDER
    if sandbox_crossing(paid_with=gateway, chosen=order.gateway):
        log.warning("order %s was created for %s: a %s payment is refused (the sandbox moves no money)",
                    order.order_no, order.gateway, gateway)
        return Outcome.WRONG_GATEWAY
    if Payment.objects.filter(gateway=gateway, trade_no=notice.trade_no).exists():
        return Outcome.DUPLICATE
    # No savepoint needed: twins of this trade for this order queue on the order lock above and
    # see it here. A twin naming another order fails the unique constraint, the transaction
    # rolls back, the gateway is asked to retry, and the retry finds the trade applied.
    Payment.objects.create(order=order, gateway=gateway, trade_no=notice.trade_no, amount=notice.amount,
                           currency=notice.currency, created_at=clock.now())
    outcome = _apply(order, gateway, notice, wait=wait)
    coupon_use_count(order, outcome=outcome)  # the coupon row, last in the lock order (fulfilment/coupon_uses.py)
    return outcome


def sandbox_crossing(*, paid_with: str, chosen: str) -> bool:
    """A buyer may pay through another real gateway than the one chosen (recorded as
    `gateway_switched`), but the sandbox only ever pays sandbox orders, and sandbox orders are
    paid only by the sandbox: otherwise a free simulated payment could settle a real order."""
    return paid_with != chosen and "sandbox" in (paid_with, chosen)


def _apply(order: Order, gateway: str, notice: Notice, *, wait: bool) -> Outcome:
    now = clock.now()
    if not money.same_money(notice.amount, notice.currency, order.amount, order.currency):
        paid, expected = f"{notice.amount} {notice.currency}", f"{order.amount} {order.currency}"
        return _flag(order, "amount_mismatch", f"paid {paid}, expected {expected}", paid=paid, expected=expected)
    if order.status != Order.Status.PENDING and order.status != Order.Status.EXPIRED:
        # A second, different trade for an order already paid: the buyer paid twice.
        order_event(order=order, kind="duplicate_payment", gateway=gateway, trade_no=notice.trade_no)
        admin_alert(event="duplicate_payment", dedupe_key=f"{gateway}:{notice.trade_no}",
                    params={"order_no": order.order_no, "trade_no": notice.trade_no, "gateway": gateway})
        return Outcome.FLAGGED
    if order.status == Order.Status.EXPIRED or now > order.expires_at + payment_grace():
        return _flag(order, "paid_after_expiry", f"paid at {now:%Y-%m-%d %H:%M:%S} after the order expired; refund or deliver by hand",
                     paid_at=f"{now:%Y-%m-%d %H:%M:%S %Z}")
    if gateway != order.gateway:
        order_event(order=order, kind="gateway_switched", chosen=order.gateway, paid_with=gateway)
    order.paid_at = now
    order_event(order=order, kind="paid", gateway=gateway, trade_no=notice.trade_no, amount=str(notice.amount))
    if coupon_hold(order):  # its coupon's uses ran out after checkout: paid and recorded, a person decides
        return Outcome.FLAGGED
    if order.product.kind == Product.Kind.DYNAMIC:  # keys minted by the merchant's URL after commit (fulfilment/mint)
        mint_queue(order)
        return Outcome.AWAITING_STOCK
    if not order.product.needs_keys:
        return _await_staff(order)
    if _fulfil(order, wait=wait):
        return Outcome.FULFILLED
    order.status = Order.Status.AWAITING_STOCK
    order.save(update_fields=["status", "paid_at"])
    order_event(order=order, kind="awaiting_stock", quantity=order.quantity)
    admin_alert(event="awaiting_stock", dedupe_key=order.order_no,
                params={"order_no": order.order_no, "product": order.product.slug})
    return Outcome.AWAITING_STOCK


def _await_staff(order: Order) -> Outcome:
    """A `manual` product claims no keys: the paid order waits for a person (order_fulfil_manually)."""
    order.status = Order.Status.AWAITING_MANUAL
    order.save(update_fields=["status", "paid_at"])
    order_event(order=order, kind="awaiting_manual", quantity=order.quantity)
    answers = "".join(f"\n{label}: {value}" for label, value in order.custom_answers)
    admin_alert(event="awaiting_manual", dedupe_key=order.order_no,
                params={"order_no": order.order_no, "product": order.product.slug, "product_name": order.product.name,
                        "quantity": order.quantity, "answers": answers})
    return Outcome.AWAITING_MANUAL


def _fulfil(order: Order, *, wait: bool) -> bool:
    """Claim keys and fulfil `order` (locked by the caller). False: not enough stock, nothing changed."""
    product = order.product
    ids = keys_claim(product=product, quantity=order.quantity, wait=wait)
    if ids is None:
        return False
    exclusive = product.kind != Product.Kind.REUSABLE  # unique, and dynamic keys a person imported
    OrderKey.objects.bulk_create([
        OrderKey(order=order, key_id=key_id, exclusive_key_id=key_id if exclusive else None, position=i)
        for i, key_id in enumerate(ids)
    ])
    order.status = Order.Status.FULFILLED
    order.fulfilled_at = clock.now()
    order.save(update_fields=["status", "paid_at", "fulfilled_at"])
    order_event(order=order, kind="fulfilled", keys=len(ids))
    order_keys_enqueue(order_id=order.pk, email=order.email)
    if exclusive:
        low_stock_check(product)
    return True


def low_stock_check(product: Product) -> None:
    """Queue one alert when available stock falls below the threshold (once per episode)."""
    if not product.low_stock or product.low_stock_alerted:
        return
    left = available_count(product_id=product.pk, at_most=product.low_stock)
    if left < product.low_stock and Product.objects.filter(pk=product.pk, low_stock_alerted=False).update(low_stock_alerted=True):
        admin_alert(event="low_stock", dedupe_key=f"{product.pk}:{clock.now().isoformat()}",
                    params={"product": product.slug, "product_name": product.name, "left": left,
                            "threshold": product.low_stock})


def _flag(order: Order, reason: str, detail: str, **params: str) -> Outcome:
    if order.status in (Order.Status.PENDING, Order.Status.EXPIRED):
        order.status = Order.Status.FLAGGED
        order.flag_reason = reason
        order.save(update_fields=["status", "flag_reason"])
    order_event(order=order, kind="flagged", reason=reason, detail=detail)
    admin_alert(event="flagged", dedupe_key=f"{order.order_no}:{reason}", text=f"flagged.{reason}",
                params={"order_no": order.order_no, **params})
    return Outcome.FLAGGED


def order_fulfil_from_stock(*, order_id: int, wait: bool = False) -> bool:
    """Backfill one awaiting-stock order (locked here). True when it was fulfilled."""
    with transaction.atomic():  # same shape as confirm: lock the order, then claim keys
        order = orders_for_update().filter(
            id=order_id, status=Order.Status.AWAITING_STOCK).first()
        if order is None:
            return False
        return _fulfil(order, wait=wait)



