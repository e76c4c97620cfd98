"""The confirm's common case as one set-based statement (PostgreSQL; issue 9).

The common case is a pending order of an auto-delivered (`unique`) product, no coupon, paid
through the gateway it was created for, with the expected money, in time, by a trade not seen
before, and enough keys: one `CONFIRM_POSTGRES` statement then does what the ORM path
(`kami.fulfilment.confirm._decide`) does in about ten:

    lock the order (FOR UPDATE OF the order alone; the product is read, not locked)
    → claim `quantity` keys (FOR UPDATE SKIP LOCKED, `key_claim_available` in id order)
    → mark them sold, link them to the order (exclusive_key: a second sale cannot exist)
    → record the trade (unique (gateway, trade_no)) → order fulfilled → events paid, fulfilled
    → the email delivery's outbox row

All-or-nothing: every write is conditioned on the claim having found all `quantity` keys, so when
the statement finds anything else (no such order, not pending, another gateway, other money,
late, a coupon, a reusable or manual product, a trade already recorded, short stock) it changes
nothing and answers "not applied"; the caller then runs the ORM path, which decides that case
exactly as before (and locks the order itself). The ORM path stays the reference:
tests/fulfilment/test_confirm_sql.py runs the same scenarios through both and compares the rows.

Why one statement is safe under concurrency (READ COMMITTED): the order lock waits for a
concurrent confirm of the same order and then re-checks the WHERE on the row as committed
(PostgreSQL's EvalPlanQual), so a twin finds the order no longer pending and falls back to the
ORM path, which answers DUPLICATE; a key sold by a transaction that committed after the
statement's snapshot fails the re-check of `status = 'available'` and is skipped like a locked one.

MariaDB (no UPDATE … RETURNING, no data-modifying CTE) and SQLite keep the ORM path.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection

from kami.catalog.models import Product
from kami.payments.interface import Notice

# %(name)s parameters only; table and column names as Django's models define them.
CONFIRM_POSTGRES = """
WITH ord AS (
    SELECT o.id, o.quantity, o.product_id, o.email,
           p.slug, p.name, p.low_stock, p.low_stock_alerted
      FROM orders_order o JOIN catalog_product p ON p.id = o.product_id
     WHERE o.order_no = %(order_no)s AND o.status = 'pending' AND o.gateway = %(gateway)s
       AND o.amount = %(amount)s AND upper(o.currency) = upper(%(currency)s)
       AND o.expires_at >= %(late_after)s AND o.coupon_id IS NULL AND p.kind = 'unique'
       AND NOT EXISTS (SELECT 1 FROM payments_payment t
                        WHERE t.gateway = %(gateway)s AND t.trade_no = %(trade_no)s)
       FOR UPDATE OF o
), claim AS (
    SELECT k.id FROM stock_key k
     WHERE k.product_id = (SELECT product_id FROM ord) AND k.status = 'available' AND NOT k.reusable
     ORDER BY k.status, k.id
     LIMIT (SELECT quantity FROM ord)
       FOR UPDATE SKIP LOCKED
), enough AS (
    SELECT ord.id, ord.quantity, ord.email FROM ord WHERE (SELECT count(*) FROM claim) = ord.quantity
), sold AS (
    UPDATE stock_key k SET status = 'sold', sold_at = %(now)s
      FROM claim, enough
     WHERE k.id = claim.id AND k.status = 'available'
    RETURNING k.id
), paid AS (
    UPDATE orders_order o SET status = 'fulfilled', paid_at = %(now)s, fulfilled_at = %(now)s
      FROM enough
     WHERE o.id = enough.id AND (SELECT count(*) FROM sold) = enough.quantity
    RETURNING o.id, o.quantity, o.email
), trade AS (
    INSERT INTO payments_payment (order_id, gateway, trade_no, amount, currency, created_at)
    SELECT paid.id, %(gateway)s, %(trade_no)s, %(amount)s, %(currency)s, %(now)s FROM paid
    RETURNING id
), linked AS (
    INSERT INTO orders_orderkey (order_id, key_id, exclusive_key_id, position)
    SELECT paid.id, sold.id, sold.id, row_number() OVER (ORDER BY sold.id) - 1
      FROM paid, sold ORDER BY sold.id
    RETURNING id
), events AS (
    INSERT INTO orders_orderevent (order_id, at, kind, detail)
    SELECT paid.id, %(now)s, e.kind, e.detail
      FROM paid CROSS JOIN LATERAL (VALUES (1, 'paid', %(paid_detail)s::jsonb),
                                           (2, 'fulfilled', jsonb_build_object('keys', paid.quantity)))
                                   AS e (step, kind, detail)
     ORDER BY e.step
    RETURNING id
), outbox AS (
    INSERT INTO delivery_outboxmessage (kind, channel, target, payload, dedupe_key, status, attempts,
                                        next_attempt_at, lease_until, lease_token, last_error, message_id,
                                        created_at, sent_at, note, handled_by, handled_at)
    SELECT 'order_keys', 'email', paid.email, jsonb_build_object('order_id', paid.id),
           'order_keys:' || paid.id || ':email', 'pending', 0, %(now)s, NULL, '', '', '', %(now)s, NULL, '', '', NULL
      FROM paid WHERE paid.email <> ''
    RETURNING id
)
SELECT (SELECT id FROM paid), (SELECT count(*) FROM sold), (SELECT count(*) FROM trade),
       (SELECT count(*) FROM linked), (SELECT count(*) FROM events), (SELECT count(*) FROM outbox),
       ord.product_id, ord.slug, ord.name, ord.low_stock, ord.low_stock_alerted, ord.quantity, ord.email <> ''
  FROM (SELECT 1) one LEFT JOIN ord ON true
"""


@dataclass(frozen=True)
class Applied:
    """What the statement did: the order it fulfilled, and its product as far as the steps after
    the statement need it (the low-stock check)."""

    order_id: int
    product: Product


def set_based_available() -> bool:
    """PostgreSQL only, unless KAMI_CONFIRM_SQL turns it off (the ORM path then does everything)."""
    return connection.vendor == "postgresql" and settings.KAMI_CONFIRM_SQL


def confirm_set_based(*, gateway: str, notice: Notice, now: datetime, grace: timedelta) -> Applied | None:
    """Run CONFIRM_POSTGRES in the caller's transaction. None: not the common case, nothing changed."""
    params = {"order_no": notice.order_no, "gateway": gateway, "trade_no": notice.trade_no, "amount": notice.amount,
              "currency": notice.currency, "now": now, "late_after": now - grace,
              "paid_detail": json.dumps({"gateway": gateway, "trade_no": notice.trade_no, "amount": str(notice.amount)})}
    with connection.cursor() as cursor:
        cursor.execute(CONFIRM_POSTGRES, params)
        order_id, sold, trades, linked, events, outbox, product_id, slug, name, low, alerted, quantity, mailed = \
            cursor.fetchone()
    if order_id is None:
        if sold or trades or linked or events or outbox:
            raise RuntimeError(f"set-based confirm wrote rows for an order it did not fulfil ({sold} keys); rolling back")
        return None
    if (sold, trades, linked, events, outbox) != (quantity, 1, quantity, 2, 1 if mailed else 0):  # no email: no row
        raise RuntimeError(f"set-based confirm wrote {sold} keys, {trades} trades, {linked} links, {events} events, "
                           f"{outbox} outbox rows for an order of {quantity}; rolling back")
    product = Product(pk=product_id, slug=slug, name=name, kind=Product.Kind.UNIQUE, low_stock=low,
                      low_stock_alerted=alerted)
    return Applied(order_id=order_id, product=product)
