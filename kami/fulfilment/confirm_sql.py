"""The confirm's common case as one set-based statement (PostgreSQL; issue 9).

The common case is a pending order of an auto-delivered (`unique`) product, no coupon, paid
through the gateway it was created for, with the expected money, in time, by a trade not seen
before, and enough keys: one `CONFIRM_POSTGRES` statement then does what the ORM path
(`kami.fulfilment.confirm._decide`) does in about ten:

    lock the order (FOR UPDATE OF the order alone; the product is read, not locked)
    → claim `quantity` keys (FOR UPDATE SKIP LOCKED, `key_claim_available` in id order: the
      product as `= ANY(ARRAY[…])`, kami/stock/claim.py says why)
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

MariaDB has no UPDATE … RETURNING and no data-modifying CTE: there the same common case (and a
batch's, CONFIRM_POSTGRES_MANY below) is a short fixed sequence of statements with the same
conditions and the same rows, in kami/fulfilment/confirm_mariadb.py. SQLite keeps the ORM path.
"""
from __future__ import annotations

import json
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta

import psycopg
from django.conf import settings
from django.db import connection

from kami.catalog.models import Product
from kami.payments.interface import Notice


def _compact(sql: str) -> str:
    """The statement with each run of whitespace made one space: psycopg remembers how it turned a
    statement's %(name)s into $1… only for statements up to 4,096 characters
    (psycopg._queries.MAX_CACHED_STATEMENT_LENGTH) and parsed the indented batch statement anew
    for every batch. No literal in these statements holds two spaces or a newline."""
    return " ".join(sql.split())


# %(name)s parameters only; table and column names as Django's models define them.
CONFIRM_POSTGRES = _compact("""
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
     WHERE k.product_id = ANY(ARRAY[(SELECT product_id FROM ord)]) AND k.status = 'available' AND NOT k.reusable
     ORDER BY k.product_id, k.id
     LIMIT (SELECT quantity FROM ord)
       FOR UPDATE SKIP LOCKED
), enough AS (
    SELECT ord.id, ord.quantity, ord.email FROM ord WHERE (SELECT count(*) FROM claim) = ord.quantity
), sold AS (
    UPDATE stock_key k SET status = 'sold', sold_at = %(now)s
     WHERE k.id = ANY(ARRAY(SELECT id FROM claim)) AND k.status = 'available' AND EXISTS (SELECT FROM enough)
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
""")


@contextmanager
def binding_cursor():
    """A cursor on Django's connection (same session, same transaction) that sends the parameters
    apart from the statement, as psycopg's own cursor does, where Django's quotes each into the
    SQL: `%b` then sends an array in binary, with no escaping and quoting of its elements in Python
    (the group commit's leader is the serial section). Wrapped as Django wraps its cursors: logged,
    counted and its errors Django's. PostgreSQL only.

    Its statements are also the only ones psycopg can prepare: with `?prepare_threshold=5` in
    DATABASE_URL (Django's OPTIONS; off by default, as a PgBouncer in transaction mode needs 1.21+
    with max_prepared_statements set to carry them) a connection prepares CONFIRM_POSTGRES_MANY on
    its fifth batch, and from then on PostgreSQL plans it once (its generic plan, checked in
    tests/fulfilment/test_confirm_sql.py): 0.05–0.2 ms instead of 0.9–1.1 ms of planning for 16
    orders, beside 2 ms of execution."""
    connection.ensure_connection()
    raw = psycopg.Cursor(connection.connection)
    try:
        yield connection.make_debug_cursor(raw) if connection.queries_logged else connection.make_cursor(raw)
    finally:
        raw.close()


@dataclass(frozen=True)
class Applied:
    """What the statement did: the order it fulfilled, and its product as far as the steps after
    the statement need it (the low-stock check)."""

    order_id: int
    product: Product


def set_based_available() -> bool:
    """PostgreSQL and MariaDB, unless KAMI_CONFIRM_SQL turns it off (the ORM path then does everything)."""
    return connection.vendor in ("postgresql", "mysql") and settings.KAMI_CONFIRM_SQL


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


# Several notices' common cases at once (group commit, kami/fulfilment/batch.py): CONFIRM_POSTGRES
# for a whole batch, one row of input per notice (`n`: its place in the batch). Orders are locked
# in order-number order (the batches' global lock order); each product's keys are claimed at once
# (SKIP LOCKED, as many as its orders need) and dealt out in order-number order, each order all or
# nothing: an order its product's claim cannot cover in full is left untouched, like every order
# that is not the common case, for the per-notice path. The caller passes each order and each
# trade at most once (a twin goes to the per-notice path after the statement, and sees its effects).
CONFIRM_POSTGRES_MANY = _compact("""
WITH given AS (
    SELECT * FROM unnest(%(n)b::int[], %(order_no)b::text[], %(gateway)b::text[], %(trade_no)b::text[],
                         %(amount)b::numeric[], %(currency)b::text[], %(paid_detail)b::jsonb[])
           AS g (n, order_no, gateway, trade_no, amount, currency, paid_detail)
), ord AS (
    SELECT o.id, o.order_no, o.quantity, o.product_id, o.email,
           g.n, g.gateway, g.trade_no, g.amount, g.currency, g.paid_detail,
           p.slug, p.name, p.low_stock, p.low_stock_alerted
      FROM given g JOIN orders_order o ON o.order_no = g.order_no JOIN catalog_product p ON p.id = o.product_id
     WHERE o.status = 'pending' AND o.gateway = g.gateway
       AND o.amount = g.amount AND upper(o.currency) = upper(g.currency)
       AND o.expires_at >= %(late_after)s AND o.coupon_id IS NULL AND p.kind = 'unique'
       AND NOT EXISTS (SELECT 1 FROM payments_payment t
                        WHERE t.gateway = g.gateway AND t.trade_no = g.trade_no)
     ORDER BY o.order_no
       FOR UPDATE OF o
), need AS (
    SELECT product_id, sum(quantity) AS total FROM ord GROUP BY product_id
), claim AS (
    SELECT c.id, need.product_id, row_number() OVER (PARTITION BY need.product_id ORDER BY c.id) AS rank
      FROM need CROSS JOIN LATERAL (
           SELECT k.id FROM stock_key k
            WHERE k.product_id = ANY(ARRAY[need.product_id]) AND k.status = 'available' AND NOT k.reusable
            ORDER BY k.product_id, k.id
            LIMIT need.total
              FOR UPDATE SKIP LOCKED) c
), dealt AS (
    SELECT ord.*, sum(ord.quantity) OVER (PARTITION BY ord.product_id ORDER BY ord.order_no) AS upto FROM ord
), enough AS (
    SELECT d.* FROM dealt d WHERE d.upto <= (SELECT count(*) FROM claim c WHERE c.product_id = d.product_id)
), sold AS (
    UPDATE stock_key k SET status = 'sold', sold_at = %(now)s
      FROM claim c JOIN enough e ON e.product_id = c.product_id AND c.rank > e.upto - e.quantity AND c.rank <= e.upto
     WHERE k.id = c.id AND k.status = 'available'
    RETURNING k.id, e.id AS order_id
), paid AS (
    UPDATE orders_order o SET status = 'fulfilled', paid_at = %(now)s, fulfilled_at = %(now)s
      FROM enough e
     WHERE o.id = e.id AND (SELECT count(*) FROM sold s WHERE s.order_id = e.id) = e.quantity
    RETURNING o.id, e.order_no, e.quantity, e.email, e.gateway, e.trade_no, e.amount, e.currency, e.paid_detail
), trade AS (
    INSERT INTO payments_payment (order_id, gateway, trade_no, amount, currency, created_at)
    SELECT paid.id, paid.gateway, paid.trade_no, paid.amount, paid.currency, %(now)s FROM paid ORDER BY paid.order_no
    RETURNING id
), linked AS (
    INSERT INTO orders_orderkey (order_id, key_id, exclusive_key_id, position)
    SELECT paid.id, s.id, s.id, row_number() OVER (PARTITION BY paid.id ORDER BY s.id) - 1
      FROM paid JOIN sold s ON s.order_id = paid.id ORDER BY paid.order_no, s.id
    RETURNING id
), events AS (
    INSERT INTO orders_orderevent (order_id, at, kind, detail)
    SELECT paid.id, %(now)s, e.kind, e.detail
      FROM paid CROSS JOIN LATERAL (VALUES (1, 'paid', paid.paid_detail),
                                           (2, 'fulfilled', jsonb_build_object('keys', paid.quantity)))
                                   AS e (step, kind, detail)
     ORDER BY paid.order_no, e.step
    RETURNING id
), outbox AS (
    INSERT INTO delivery_outboxmessage (kind, channel, target, payload, dedupe_key, status, attempts,
                                        next_attempt_at, lease_until, lease_token, last_error, message_id,
                                        created_at, sent_at, note, handled_by, handled_at)
    SELECT 'order_keys', 'email', paid.email, jsonb_build_object('order_id', paid.id),
           'order_keys:' || paid.id || ':email', 'pending', 0, %(now)s, NULL, '', '', '', %(now)s, NULL, '', '', NULL
      FROM paid WHERE paid.email <> '' ORDER BY paid.order_no
    RETURNING id
)
SELECT g.n, paid.id, ord.product_id, ord.slug, ord.name, ord.low_stock, ord.low_stock_alerted,
       (SELECT count(*) FROM paid), (SELECT coalesce(sum(quantity), 0) FROM paid),
       (SELECT count(*) FROM paid WHERE email <> ''), (SELECT count(*) FROM sold), (SELECT count(*) FROM trade),
       (SELECT count(*) FROM linked), (SELECT count(*) FROM events), (SELECT count(*) FROM outbox)
  FROM given g LEFT JOIN ord ON ord.n = g.n LEFT JOIN paid ON paid.id = ord.id
""")


def confirm_set_based_many(*, notices: list[tuple[str, Notice]], now: datetime,
                           grace: timedelta) -> dict[int, Applied]:
    """Run CONFIRM_POSTGRES_MANY in the caller's transaction for (gateway, notice) pairs, each order
    and each trade at most once. Returns {index in `notices`: Applied} for the orders it fulfilled;
    the others were not changed."""
    params = {"n": list(range(len(notices))), "order_no": [n.order_no for _, n in notices],
              "gateway": [g for g, _ in notices], "trade_no": [n.trade_no for _, n in notices],
              "amount": [n.amount for _, n in notices], "currency": [n.currency for _, n in notices],
              "paid_detail": [json.dumps({"gateway": g, "trade_no": n.trade_no, "amount": str(n.amount)})
                              for g, n in notices],
              "now": now, "late_after": now - grace}
    with binding_cursor() as cursor:
        cursor.execute(CONFIRM_POSTGRES_MANY, params)
        rows = cursor.fetchall()
    applied, counts, products = {}, None, {}
    for n, order_id, product_id, slug, name, low, alerted, *totals in rows:
        counts = totals
        if order_id is not None:
            if product_id not in products:  # one instance a product, not one an order: the batch is the serial section
                products[product_id] = Product(pk=product_id, slug=slug, name=name, kind=Product.Kind.UNIQUE,
                                               low_stock=low, low_stock_alerted=alerted)
            applied[n] = Applied(order_id=order_id, product=products[product_id])
    orders, keys, mailed, sold, trades, linked, events, outbox = counts
    if (orders, sold, trades, linked, events, outbox) != (len(applied), keys, orders, keys, 2 * orders, mailed):
        raise RuntimeError(f"set-based batch confirm fulfilled {len(applied)} orders ({orders} paid) but wrote {sold} "
                           f"keys, {trades} trades, {linked} links, {events} events, {outbox} outbox rows "
                           f"for {keys} keys; rolling back")
    return applied
