"""The confirm's common case on MariaDB: a short fixed sequence of statements (issue 9).

MariaDB has no UPDATE … RETURNING and no data-modifying CTE, so PostgreSQL's one statement
(kami/fulfilment/confirm_sql.py, CONFIRM_POSTGRES and, for a group commit's batch,
CONFIRM_POSTGRES_MANY) is here a few statements in the caller's transaction, with the same
conditions and the same rows:

    lock the order rows alone (SELECT … FOR UPDATE on orders_order; the product is read in
        scalar subqueries, which a locking read does not lock: MariaDB has no FOR UPDATE OF)
    → the trade not seen before → claim keys (SELECT id … FOR UPDATE SKIP LOCKED, the ORM claim's query)
    → only when the claim covers the order(s): keys sold, orders fulfilled, then one multi-row
      INSERT each for the payments, the order keys, the events (paid, fulfilled), the email rows

Nothing is written before the claim has every key the order needs, so "not applied" again means
nothing changed, and the ORM path (`kami.fulfilment.confirm._decide`) decides that case in the
same transaction, re-locking the order it may already hold. The payment row comes after the
claim, as in CONFIRM_POSTGRES: a twin trade naming another order still fails on the unique
(gateway, trade_no) and rolls back. A twin of the same order waits on the order lock and, at
READ COMMITTED, reads the committed row: no longer pending, so the ORM path answers DUPLICATE.

The SQL is prebuilt, parameters only; no model instance is made on the way, except the product
for the low-stock check when its threshold is set and not yet alerted.
tests/fulfilment/test_confirm_sql.py runs the same scenarios through this and the ORM path and
compares the rows, and holds the sequence's transaction open to show the product is not locked.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from django.db import connection

from kami.catalog.models import Product
from kami.fulfilment.confirm_sql import Applied
from kami.payments.interface import Notice

# The order's columns the sequence needs, and CONFIRM_POSTGRES's conditions but the money and the
# trade, which differ per notice: CONFIRM_MARIADB_ORDER checks those in SQL for one notice,
# CONFIRM_MARIADB_ORDERS leaves them to Python for a batch. The product is read by scalar
# subqueries (its primary key, per order row), which MariaDB never turns into a join of the
# locking read (an EXISTS may become a semi-join). IN lists take a tuple (the driver writes it as
# `(…)`); the multi-row INSERTs go through `executemany`, which the driver sends as one INSERT.
_COLUMNS = """o.id, o.order_no, o.quantity, o.product_id, o.email, o.gateway, o.amount, o.currency,
       (SELECT p.low_stock > 0 AND NOT p.low_stock_alerted FROM catalog_product p WHERE p.id = o.product_id)"""
_PENDING = """o.status = 'pending' AND o.expires_at >= %(late_after)s AND o.coupon_id IS NULL
   AND (SELECT p.kind FROM catalog_product p WHERE p.id = o.product_id) = 'unique'"""
CONFIRM_MARIADB_ORDER = f"""
SELECT {_COLUMNS}
  FROM orders_order o
 WHERE o.order_no = %(order_no)s AND o.gateway = %(gateway)s AND o.amount = %(amount)s
   AND upper(o.currency) = upper(%(currency)s) AND {_PENDING}
   AND NOT EXISTS (SELECT 1 FROM payments_payment t WHERE t.gateway = %(gateway)s AND t.trade_no = %(trade_no)s)
   FOR UPDATE
"""
CONFIRM_MARIADB_ORDERS = f"""
SELECT {_COLUMNS}
  FROM orders_order o
 WHERE o.order_no IN %(order_nos)s AND {_PENDING}
 ORDER BY o.order_no
   FOR UPDATE
"""
CONFIRM_MARIADB_TRADES = "SELECT gateway, trade_no FROM payments_payment WHERE gateway IN %s AND trade_no IN %s"
CONFIRM_MARIADB_CLAIM = """
SELECT id FROM stock_key WHERE product_id = %s AND reusable = 0 AND status = 'available'
 ORDER BY id LIMIT %s FOR UPDATE SKIP LOCKED
"""
CONFIRM_MARIADB_SOLD = "UPDATE stock_key SET status = 'sold', sold_at = %s WHERE id IN %s AND status = 'available'"
CONFIRM_MARIADB_PAID = """
UPDATE orders_order SET status = 'fulfilled', paid_at = %s, fulfilled_at = %s WHERE id IN %s AND status = 'pending'
"""
CONFIRM_MARIADB_TRADE = """
INSERT INTO payments_payment (order_id, gateway, trade_no, amount, currency, created_at) VALUES (%s, %s, %s, %s, %s, %s)
"""
CONFIRM_MARIADB_LINKED = "INSERT INTO orders_orderkey (order_id, key_id, exclusive_key_id, position) VALUES (%s, %s, %s, %s)"
CONFIRM_MARIADB_EVENTS = "INSERT INTO orders_orderevent (order_id, at, kind, detail) VALUES (%s, %s, %s, %s)"
CONFIRM_MARIADB_OUTBOX = """
INSERT INTO delivery_outboxmessage (kind, channel, target, payload, dedupe_key, status, attempts, next_attempt_at,
                                    lease_until, lease_token, last_error, message_id, created_at, sent_at, note,
                                    handled_by, handled_at)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
"""


@dataclass(frozen=True)
class _Order:
    """An order row the lock returned, with the notice that pays it and the keys dealt to it."""

    id: int
    order_no: str
    quantity: int
    product_id: int
    email: str
    gateway: str
    amount: Decimal
    currency: str
    low_stock_watched: int | None


def confirm_mariadb(*, gateway: str, notice: Notice, now: datetime, grace: timedelta) -> Applied | None:
    """The common case for one notice, in the caller's transaction. None: not the common case
    (or short of keys under SKIP LOCKED), nothing written; the ORM path then decides."""
    with connection.cursor() as cursor:
        cursor.execute(CONFIRM_MARIADB_ORDER, {
            "order_no": notice.order_no, "gateway": gateway, "trade_no": notice.trade_no, "amount": notice.amount,
            "currency": notice.currency, "late_after": connection.ops.adapt_datetimefield_value(now - grace)})
        row = cursor.fetchone()
        if row is None:
            return None
        order = _Order(*row)
        cursor.execute(CONFIRM_MARIADB_CLAIM, (order.product_id, order.quantity))
        keys = [key_id for key_id, in cursor.fetchall()]
        if len(keys) < order.quantity:
            return None  # the ORM path claims again: ShortClaim and the waiting claim, or awaiting stock
        _write(cursor, [(order, gateway, notice, keys)], now)
    return _applied([order])[order.id]


def confirm_mariadb_many(*, notices: list[tuple[str, Notice]], now: datetime, grace: timedelta) -> dict[int, Applied]:
    """The common cases of a batch (CONFIRM_POSTGRES_MANY's rules), in the caller's transaction,
    for (gateway, notice) pairs naming each order and each trade at most once. Orders are locked
    in order-number order; each product's keys are claimed at once and dealt in order-number
    order, each order all or nothing, and an order the claim cannot cover is left with every
    later one of its product. Returns {index in `notices`: Applied}; the others were not changed."""
    by_order = {notice.order_no: (n, gateway, notice) for n, (gateway, notice) in enumerate(notices)}
    with connection.cursor() as cursor:
        cursor.execute(CONFIRM_MARIADB_ORDERS, {"order_nos": tuple(by_order),
                                                "late_after": connection.ops.adapt_datetimefield_value(now - grace)})
        orders = [_Order(*row) for row in cursor.fetchall()]
        orders = [o for o in orders if _money_matches(o, *by_order[o.order_no][1:])]
        if not orders:
            return {}
        seen = _trades_seen(cursor, [by_order[o.order_no][1:] for o in orders])
        orders = [o for o in orders if (by_order[o.order_no][1], by_order[o.order_no][2].trade_no) not in seen]
        dealt = []
        for product_id in dict.fromkeys(o.product_id for o in orders):
            mine = [o for o in orders if o.product_id == product_id]
            cursor.execute(CONFIRM_MARIADB_CLAIM, (product_id, sum(o.quantity for o in mine)))
            keys = [key_id for key_id, in cursor.fetchall()]
            for order in mine:
                if len(keys) < order.quantity:
                    break  # all or nothing, and no later order of the product jumps it (as CONFIRM_POSTGRES_MANY)
                dealt.append((order, *by_order[order.order_no][1:], keys[:order.quantity]))
                keys = keys[order.quantity:]
        if not dealt:
            return {}
        dealt.sort(key=lambda d: d[0].order_no)
        _write(cursor, dealt, now)
    applied = _applied([order for order, *_ in dealt])
    return {by_order[order.order_no][0]: applied[order.id] for order, *_ in dealt}


def _money_matches(order: _Order, gateway: str, notice: Notice) -> bool:
    """CONFIRM_MARIADB_ORDER's money conditions, for a batch's rows (`money.same_money`'s rule)."""
    return order.gateway == gateway and order.amount == notice.amount and order.currency.upper() == notice.currency.upper()


def _trades_seen(cursor, pairs: list[tuple[str, Notice]]) -> set[tuple[str, str]]:
    cursor.execute(CONFIRM_MARIADB_TRADES, (tuple({gateway for gateway, _ in pairs}),
                                            tuple(notice.trade_no for _, notice in pairs)))
    return set(cursor.fetchall())


def _write(cursor, dealt: list[tuple[_Order, str, Notice, list[int]]], now: datetime) -> None:
    """The rows of fulfilled orders (each with its gateway, notice and keys, in order-number order)."""
    at = connection.ops.adapt_datetimefield_value(now)
    keys = tuple(key_id for *_, ids in dealt for key_id in ids)
    cursor.execute(CONFIRM_MARIADB_SOLD, (at, keys))
    _wrote(cursor, len(keys), "keys marked sold")
    cursor.execute(CONFIRM_MARIADB_PAID, (at, at, tuple(order.id for order, *_ in dealt)))
    _wrote(cursor, len(dealt), "orders fulfilled")
    cursor.executemany(CONFIRM_MARIADB_TRADE, [(order.id, gateway, notice.trade_no, notice.amount, notice.currency, at)
                                               for order, gateway, notice, _ in dealt])
    cursor.executemany(CONFIRM_MARIADB_LINKED, [(order.id, key_id, key_id, position)
                                                for order, *_, ids in dealt for position, key_id in enumerate(ids)])
    cursor.executemany(CONFIRM_MARIADB_EVENTS, [
        event for order, gateway, notice, ids in dealt
        for event in ((order.id, at, "paid", json.dumps({"gateway": gateway, "trade_no": notice.trade_no,
                                                         "amount": str(notice.amount)})),
                      (order.id, at, "fulfilled", json.dumps({"keys": len(ids)})))])
    mailed = [order for order, *_ in dealt if order.email]  # no email (made in the Telegram bot without one): no row
    if mailed:
        cursor.executemany(CONFIRM_MARIADB_OUTBOX, [
            ("order_keys", "email", order.email, json.dumps({"order_id": order.id}), f"order_keys:{order.id}:email",
             "pending", 0, at, None, "", "", "", at, None, "", "", None) for order in mailed])


def _wrote(cursor, expected: int, what: str) -> None:
    if cursor.rowcount != expected:
        raise RuntimeError(f"MariaDB confirm: {cursor.rowcount} {what}, expected {expected}; rolling back")


def _applied(orders: list[_Order]) -> dict[int, Applied]:
    """Applied per order id. The low-stock check reads the product only when its threshold is set
    and not yet alerted (then unlocked, as the ORM path reads it); otherwise it returns at once."""
    products = Product.objects.in_bulk({o.product_id for o in orders if o.low_stock_watched})
    for product_id in {o.product_id for o in orders} - products.keys():  # one instance a product, not one an order
        products[product_id] = Product(pk=product_id, kind=Product.Kind.UNIQUE)
    return {o.id: Applied(order_id=o.id, product=products[o.product_id]) for o in orders}
