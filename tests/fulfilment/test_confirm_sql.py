"""The set-based confirm (kami/fulfilment/confirm_sql.py: PostgreSQL's statement, MariaDB's fixed
sequence) against the ORM reference path: the same scenarios through both leave the same rows,
field by field (ids, order numbers and times normalised); the set-based confirm handles the
common case itself and changes nothing in any other; its claim reads the claim index after
ANALYZE; on MariaDB it locks the order row alone."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connection, connections, transaction

from kami.catalog.coupons import coupon_create
from kami.catalog.models import Product
from kami.core import clock
from kami.delivery.models import OutboxMessage
from kami.fulfilment.confirm import payment_confirm, payments_decide
from kami.fulfilment.confirm_mariadb import (CONFIRM_MARIADB_CLAIM, CONFIRM_MARIADB_ORDER, CONFIRM_MARIADB_ORDERS,
                                            CONFIRM_MARIADB_TRADES, confirm_mariadb, confirm_mariadb_many)
from kami.fulfilment.confirm_sql import CONFIRM_POSTGRES, CONFIRM_POSTGRES_MANY, confirm_set_based
from kami.orders.models import Order, OrderEvent, OrderKey
from kami.orders.services import order_create, payment_grace
from kami.payments.interface import Notice
from kami.payments.models import Payment
from kami.stock.claim import claim_queryset
from kami.stock.models import Key
from tests.factories import add_keys, sold_ahead

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _server_engine():
    if connection.vendor == "sqlite":
        pytest.skip("the set-based confirm is PostgreSQL's and MariaDB's; SQLite runs the ORM path")


def _set_based(**kwargs):
    """The engine's set-based confirm of one notice, alone (as confirm.py's _decide_set_based calls it)."""
    return (confirm_mariadb if connection.vendor == "mysql" else confirm_set_based)(**kwargs)


def postgres_only():
    if connection.vendor != "postgresql":
        pytest.skip("PostgreSQL's statement (its plan, or the batch's CONFIRM_POSTGRES_MANY)")


@dataclass
class World:
    """One copy of a scenario: its own products, keys and orders, trade numbers tagged `tag`."""

    tag: str
    make_product: object
    products: list = field(default_factory=list)
    orders: list = field(default_factory=list)

    def product(self, stock: int = 5, **fields):
        product = self.make_product(slug=f"{self.tag}{len(self.products)}-prod".lower(), **fields)
        self.products.append(product)
        if stock:
            add_keys(product, [f"{self.tag}-{product.pk}-{i}" for i in range(stock)])
        return product

    def order(self, product, quantity: int = 1, gateway: str = "sandbox", coupon: str = ""):
        order = order_create(product=product, quantity=quantity, email=f"Buyer{len(self.orders)}@Example.com",
                             gateway=gateway, coupon=coupon)[0]
        self.orders.append(order)
        return order

    def paid(self, order, trade: str = "T1", amount: Decimal | None = None, currency: str | None = None,
             gateway: str = "sandbox") -> tuple[str, Notice]:
        return gateway, Notice(order_no=order.order_no, trade_no=f"{self.tag}-{trade}",
                               amount=order.amount if amount is None else amount,
                               currency=currency or order.currency, paid=True)


def common(w):
    p = w.product(stock=5)
    return [w.paid(w.order(p, 1), "A"), w.paid(w.order(p, 3), "B")]


def duplicate_and_second_trade(w):
    o = w.order(w.product(stock=3))
    return [w.paid(o), w.paid(o), w.paid(o, "T2")]


def same_trade_other_order(w):
    p = w.product(stock=3)
    a, b = w.order(p), w.order(p)
    return [w.paid(a), w.paid(b)]


def unknown_order(w):
    w.product(stock=1)
    return [("sandbox", Notice(order_no="999999999999", trade_no=f"{w.tag}-T1", amount=Decimal("29.90"),
                               currency="CNY", paid=True))]


def money_mismatch(w):
    p = w.product(stock=3)
    a, b = w.order(p), w.order(p)
    return [w.paid(a, amount=a.amount - Decimal("0.01")), w.paid(b, "T2", currency="USD")]


def currency_case(w):
    o = w.order(w.product(stock=1))
    return [w.paid(o, currency=o.currency.lower())]


def late(w):
    p = w.product(stock=3)
    past, gone = w.order(p), w.order(p)
    Order.objects.filter(pk=past.pk).update(expires_at=clock.now() - payment_grace() - timedelta(minutes=1))
    Order.objects.filter(pk=gone.pk).update(status=Order.Status.EXPIRED)
    return [w.paid(past), w.paid(gone, "T2")]


def short_stock(w):
    p = w.product(stock=2)
    o = w.order(p, 2)
    Key.objects.filter(product=p).order_by("id").first().delete()  # one key goes between order and payment
    return [w.paid(o)]


def kinds(w):
    manual, reusable = w.product(stock=0, kind="manual"), w.product(stock=2, kind="reusable")
    return [w.paid(w.order(manual, 2)), w.paid(w.order(reusable, 1), "T2")]


def other_gateway(w):
    p = w.product(stock=3)
    switched, crossing = w.order(p, gateway="epay"), w.order(p, gateway="epay")
    return [w.paid(switched, gateway="alipay"), w.paid(crossing, "T2", gateway="sandbox")]


def coupon(w):
    p = w.product(stock=3)
    coupon_create(code=f"COUP{w.tag}", kind="fixed", value="1.00", currency=p.currency, actor="test")
    return [w.paid(w.order(p, coupon=f"COUP{w.tag}"))]


def low_stock(w):
    p = w.product(stock=4, low_stock=3)
    return [w.paid(w.order(p, 2)), w.paid(w.order(p, 1), "T2")]


SCENARIOS = [common, duplicate_and_second_trade, same_trade_other_order, unknown_order, money_mismatch,
             currency_case, late, short_stock, kinds, other_gateway, coupon, low_stock]
_TIME = re.compile(r"\d{4}-\d\d-\d\d[ T]\d\d:\d\d:\d\d(\.\d+)?(\+00:00|Z| UTC)?")


def _norm(value, names: dict[str, str]):
    """Times become "<time>" (the two paths read the clock at different moments); order numbers,
    trade tags and database ids become their place in the scenario."""
    if isinstance(value, dict):
        return {k: _norm(v, names) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_norm(v, names) for v in value]
    if hasattr(value, "tzinfo"):
        return "<time>"
    if isinstance(value, str):
        value = _TIME.sub("<time>", value)
        for raw, placeholder in names.items():
            value = value.replace(raw, placeholder)
        return value
    return value


def _rows(w: World, outbox_after: int) -> dict:
    orders = list(Order.objects.filter(product__in=w.products).order_by("id"))
    keys = list(Key.objects.filter(product__in=w.products).order_by("id").values_list("id", flat=True))
    names = {o.order_no: f"O{i}" for i, o in enumerate(orders)}
    names.update({f"{w.tag}-": "W-", f"COUP{w.tag}": "COUPW"})
    names.update({p.slug: f"P{i}-prod" for i, p in enumerate(w.products)})
    ids = {"order": {o.pk: i for i, o in enumerate(orders)}, "key": {k: i for i, k in enumerate(keys)},
           "product": {p.pk: i for i, p in enumerate(w.products)}}
    names.update({f"order_keys:{o.pk}:": f"order_keys:O{i}:" for i, o in enumerate(orders)})
    names.update({f":{p.pk}:": f":P{i}:" for i, p in enumerate(w.products)})

    def row(obj, skip=("id",), **refs):
        out = {}
        for f in obj._meta.concrete_fields:
            if f.attname in skip:
                continue
            value = getattr(obj, f.attname)
            kind = refs.get(f.attname)
            out[f.attname] = ids[kind].get(value, value) if kind and value is not None else _norm(value, names)
        return out

    def payload(message):
        data = dict(message.payload)
        if "order_id" in data:
            data["order_id"] = ids["order"].get(data["order_id"])
        return data

    return {
        "products": [(p.low_stock, p.low_stock_alerted) for p in Product.objects.filter(pk__in=[p.pk for p in w.products])
                     .order_by("id")],
        "orders": [row(o, skip=("id", "token_hash", "coupon_id"), product_id="product") for o in orders],
        "keys": [row(k, skip=("id", "ciphertext", "fingerprint", "key_id", "batch_id"), product_id="product")
                 for k in Key.objects.filter(product__in=w.products).order_by("id")],
        "order_keys": [row(k, order_id="order", key_id="key", exclusive_key_id="key")
                       for k in OrderKey.objects.filter(order__in=orders).order_by("order_id", "position")],
        "payments": [row(p, order_id="order") for p in Payment.objects.filter(order__in=orders).order_by("id")],
        "events": [row(e, order_id="order") for e in OrderEvent.objects.filter(order__in=orders).order_by("id")],
        "outbox": [{**row(m), "payload": _norm(payload(m), names)}
                   for m in OutboxMessage.objects.filter(id__gt=outbox_after).order_by("id")],
    }


def _run(settings, make_product, scenario, tag: str, set_based: bool) -> tuple[list, dict]:
    settings.KAMI_CONFIRM_SQL = set_based
    w = World(tag=tag, make_product=make_product)
    notices = scenario(w)
    outbox_after = OutboxMessage.objects.order_by("-id").values_list("id", flat=True).first() or 0
    outcomes = []
    for gateway, notice in notices:
        try:
            outcomes.append(payment_confirm(gateway=gateway, notice=notice).value)
        except Exception as exc:  # the same refusal on both paths (a twin trade naming another order)
            outcomes.append(type(exc).__name__)
    return outcomes, _rows(w, outbox_after)


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.__name__ for s in SCENARIOS])
def test_the_set_based_path_leaves_the_rows_the_orm_path_leaves(settings, make_product, scenario):
    # given the same scenario twice, on its own products, orders and trade numbers
    # when one copy runs with the set-based statement and the other on the ORM path alone
    fast = _run(settings, make_product, scenario, "S", set_based=True)
    reference = _run(settings, make_product, scenario, "R", set_based=False)
    # then the outcomes and every row written are the same, field by field
    assert fast[0] == reference[0]
    for table in reference[1]:
        assert fast[1][table] == reference[1][table], table


def test_the_scenarios_cover_what_they_claim(settings, make_product):
    # the comparison above is only worth something if the cases really differ: spot checks
    outcomes, rows = _run(settings, make_product, common, "S", set_based=True)
    assert outcomes == ["fulfilled", "fulfilled"]
    assert [k["position"] for k in rows["order_keys"]] == [0, 0, 1, 2]
    assert [e["kind"] for e in rows["events"]] == ["created", "created", "paid", "fulfilled", "paid", "fulfilled"]
    assert _run(settings, make_product, short_stock, "T", set_based=True)[0] == ["awaiting_stock"]
    alerts = _run(settings, make_product, low_stock, "U", set_based=True)[1]["outbox"]
    assert [m["payload"].get("event") for m in alerts if m["kind"] == "admin_alert"] == ["low_stock"]


def _counts() -> tuple[int, ...]:
    return (Order.objects.filter(status="pending").count(), Key.objects.filter(status="available").count(),
            Payment.objects.count(), OrderEvent.objects.count(), OutboxMessage.objects.count(), OrderKey.objects.count())


@pytest.mark.parametrize("scenario", [s for s in SCENARIOS if s is not common], ids=lambda s: s.__name__)
def test_the_statement_takes_only_the_common_case_and_changes_nothing_otherwise(settings, make_product, scenario):
    # given a scenario's notices, each case other than the common one (what came before it applied on the ORM path)
    settings.KAMI_CONFIRM_SQL = False
    w = World(tag="X", make_product=make_product)
    notices = scenario(w)
    for gateway, notice in notices:
        # when the statement runs alone
        before = _counts()
        with transaction.atomic():
            applied = _set_based(gateway=gateway, notice=notice, now=clock.now(), grace=payment_grace())
        # then it applied the common case (a first good payment of an order with enough keys) and nothing else
        order = Order.objects.filter(order_no=notice.order_no).first()
        if applied is None:
            assert _counts() == before
        else:
            assert order.status == "fulfilled" and order.pk == applied.order_id
            assert scenario in (duplicate_and_second_trade, same_trade_other_order, low_stock, currency_case)
        try:
            payment_confirm(gateway=gateway, notice=notice)  # the ORM path, so the next notice meets today's state
        except Exception:
            pass


def test_the_statement_fulfils_the_common_case(make_product):
    w = World(tag="C", make_product=make_product)
    p = w.product(stock=4)
    order = w.order(p, 3)
    with transaction.atomic():
        applied = _set_based(gateway="sandbox", notice=w.paid(order)[1], now=clock.now(), grace=payment_grace())
    assert applied is not None and applied.order_id == order.pk
    order.refresh_from_db()
    assert order.status == "fulfilled" and order.paid_at and order.fulfilled_at
    assert list(OrderKey.objects.filter(order=order).values_list("key_id", "exclusive_key_id", "position")) == [
        (k, k, i) for i, k in enumerate(Key.objects.filter(product=p).order_by("id").values_list("id", flat=True)[:3])]
    assert Key.objects.filter(product=p, status="sold").count() == 3


# The planner's statistics about the hot product's keys: fresh after the sale, or from before it (all
# available): then a claim in plain id order walked the primary key through every sold key, 7,900
# buffers a batch at 10,000 sold (bench/notify_throughput.py: most of the statement's time).
STATISTICS = ["after", "before"]


@pytest.mark.parametrize("statistics", STATISTICS)
def test_the_statements_claim_reads_the_partial_index_after_analyze(make_product, statistics):
    postgres_only()
    # given thousands of keys sold ahead of the hot product's available ones
    w = World(tag="E", make_product=make_product)
    hot = w.product(stock=0)
    add_keys(hot, (f"HOT-{i}" for i in range(8000)))
    order = w.order(hot, 2)
    sold_ahead(hot, sold=7500, statistics=statistics)
    # when the statement is run, explained with its buffers (inside a transaction that rolls back)
    gateway, notice = w.paid(order)
    now = clock.now()
    params = {"order_no": notice.order_no, "gateway": gateway, "trade_no": notice.trade_no, "amount": notice.amount,
              "currency": notice.currency, "now": now, "late_after": now - payment_grace(), "paid_detail": "{}"}
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("EXPLAIN (ANALYZE, BUFFERS) " + CONFIRM_POSTGRES, params)
        plan = "\n".join(r[0] for r in cursor.fetchall())
        transaction.set_rollback(True)
    # then no step reads the whole key table (the keys sold were once found by a hash of every
    # available key: 8 ms a confirm at 16,000 keys, for one)
    assert "Seq Scan on stock_key" not in plan, plan
    # and the claim reads the index in id order, no sort, no scan of the table or the primary key
    claim = plan.split("CTE claim")[1].split("CTE enough")[0]
    assert "key_claim" in claim and "Sort" not in claim and "Seq Scan" not in claim, plan
    assert "stock_key_pkey" not in claim, plan
    hits = sum(int(n) for n in re.findall(r"(?:hit|read)=(\d+)", claim))
    assert hits < 50, plan
    assert Order.objects.get(pk=order.pk).status == "pending"


def mariadb_only():
    if connection.vendor != "mysql":
        pytest.skip("MariaDB's sequence (CONFIRM_MARIADB_*)")


def _explain(sql: str, params) -> list[dict]:
    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN " + sql, params)
        names = [c[0] for c in cursor.description]
        return [dict(zip(names, row)) for row in cursor.fetchall()]


def test_mariadbs_sequences_find_orders_by_number_and_claim_as_the_orm_claim_does(make_product):
    mariadb_only()
    # given sold keys ahead of the hot product's available ones, another product's keys, pending orders, payments,
    # fresh statistics
    w = World(tag="M", make_product=make_product)
    hot, other = w.product(stock=0), w.product(stock=0)
    add_keys(hot, (f"HOT-{i}" for i in range(3000)))
    add_keys(other, (f"OTHER-{i}" for i in range(1000)))
    sold = list(Key.objects.filter(product=hot).order_by("id").values_list("id", flat=True)[:2500])
    Key.objects.filter(id__in=sold).update(status=Key.Status.SOLD)
    order = w.order(hot, 2)
    Order.objects.bulk_create([Order(**{**{f.attname: getattr(order, f.attname) for f in Order._meta.concrete_fields
                                          if f.attname != "id"}, "order_no": f"BULK{i:08d}", "token_hash": f"t{i}"})
                               for i in range(2000)])
    Payment.objects.bulk_create([Payment(order=order, gateway="sandbox", trade_no=f"PAID{i}", amount=order.amount,
                                         currency=order.currency, created_at=clock.now()) for i in range(2000)])
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE TABLE stock_key, orders_order, payments_payment")
        cursor.fetchall()
    # when the order lock, the claim and the ORM path's claim (kami/stock/claim.py) are explained
    gateway, notice = w.paid(order)
    with transaction.atomic():
        lock = _explain(CONFIRM_MARIADB_ORDER, {
            "order_no": notice.order_no, "gateway": gateway, "trade_no": notice.trade_no, "amount": notice.amount,
            "currency": notice.currency, "late_after": "2000-01-01"})
        batch = _explain(CONFIRM_MARIADB_ORDERS, {"order_nos": (order.order_no, *(f"BULK{i:08d}" for i in range(7))),
                                                  "late_after": "2000-01-01"})
        trades = _explain(CONFIRM_MARIADB_TRADES, (("sandbox",), tuple(f"T{i}" for i in range(8))))
        claim = _explain(CONFIRM_MARIADB_CLAIM, (hot.pk, 2))
        orm_claim = claim_queryset(product=hot)[:2].explain()
    # then the orders come from their unique numbers (one row each), the product and the trades by their keys
    for plan, rows in ((lock, 1), (batch, 8)):
        tables = {row["table"]: row for row in plan}
        assert tables["o"]["type"] in ("const", "range") and int(tables["o"]["rows"]) <= rows, plan
        assert all(row["type"] != "ALL" for row in plan), plan
    assert trades[0]["type"] in ("range", "ref") and int(trades[0]["rows"]) <= 8, trades
    # and the keys as the ORM claim reads them (its plan is checked in tests/concurrency/test_claim_plan.py): same
    # access and index, no sort
    assert f" {claim[0]['type']} " in orm_claim and f" {claim[0]['key']} " in orm_claim, (claim, orm_claim)
    assert claim[0]["type"] != "ALL" and "filesort" not in (claim[0]["Extra"] or ""), claim


def _try_lock(sql: str, pk: int) -> str:
    """From a second connection: lock one row without waiting; "free" or the error."""
    other = connections.create_connection("default")
    try:
        with other.cursor() as cursor:
            cursor.execute("SET SESSION innodb_lock_wait_timeout = 1")
            other.set_autocommit(False)
            cursor.execute(sql, [pk])
            cursor.fetchall()
        return "free"
    except Exception as exc:  # a lock wait timeout: the row is locked
        return type(exc).__name__
    finally:
        other.close()


@pytest.mark.parametrize("batch", [False, True], ids=["one", "batch"])
def test_mariadbs_sequence_locks_the_order_row_alone(make_product, batch):
    mariadb_only()
    # given an order of a product, another order of it, and keys
    w = World(tag="L", make_product=make_product)
    p = w.product(stock=3)
    order, other = w.order(p), w.order(p)
    # when the sequence (alone, or a batch's) has fulfilled the order and its transaction is still open
    with transaction.atomic():
        if batch:
            assert confirm_mariadb_many(notices=[w.paid(order)], now=clock.now(), grace=payment_grace())
        else:
            assert confirm_mariadb(gateway="sandbox", notice=w.paid(order)[1], now=clock.now(), grace=payment_grace())
        # then the product row and the other order are free; the order itself is locked
        assert _try_lock("SELECT id FROM catalog_product WHERE id = %s FOR UPDATE", p.pk) == "free"
        assert _try_lock("SELECT id FROM orders_order WHERE id = %s FOR UPDATE", other.pk) == "free"
        assert _try_lock("SELECT id FROM orders_order WHERE id = %s FOR UPDATE", order.pk) == "OperationalError"

# The group commit's statement (CONFIRM_POSTGRES_MANY, through `payments_decide`): a batch of the
# same scenarios leaves the rows the ORM path leaves when the notices run one after another in the
# batch's order (order-number order). Order numbers follow creation here, so both copies deal keys
# to the same orders; rows are compared as sets (the statement writes the batch's common cases
# before the per-notice path writes the others, so ids interleave differently).
class Numbered(World):
    def order(self, product, quantity: int = 1, gateway: str = "sandbox", coupon: str = ""):
        order = super().order(product, quantity, gateway, coupon)
        order.order_no = f"{self.tag}{len(self.orders):04d}"
        Order.objects.filter(pk=order.pk).update(order_no=order.order_no)
        return order


def batch_mixed(w):
    """Two products dealt at once, quantities, a product's keys running out mid-batch (all or
    nothing: the short order gets none, a later single one gets the last key), a twin of a
    notification and a second trade for a paid order inside the batch, money that does not match."""
    p, q = w.product(stock=6), w.product(stock=2)
    a, b, c, d = w.order(p, 2), w.order(p, 3), w.order(p, 2), w.order(p, 1)
    e, f = w.order(q, 2), w.order(p, 1)
    return [w.paid(a, "A"), w.paid(b, "B"), w.paid(c, "C"), w.paid(d, "D"), w.paid(e, "E"), w.paid(a, "A"),
            w.paid(e, "E2"), w.paid(f, "F", amount=f.amount + 1)]


def _batch_order(notices):
    return sorted(notices, key=lambda pair: pair[1].order_no)  # kami/fulfilment/batch.py's order


def _run_batch(settings, make_product, scenario, tag: str) -> tuple[list, dict]:
    settings.KAMI_CONFIRM_SQL = True
    w = Numbered(tag=tag, make_product=make_product)
    notices = _batch_order(scenario(w))
    outbox_after = OutboxMessage.objects.order_by("-id").values_list("id", flat=True).first() or 0
    try:
        with transaction.atomic():
            outcomes = [o.value for o in payments_decide(notices)]
    except Exception:  # the batch rolls back whole; batch.py then confirms each alone
        outcomes = []
        for gateway, notice in notices:
            try:
                outcomes.append(payment_confirm(gateway=gateway, notice=notice).value)
            except Exception as exc:
                outcomes.append(type(exc).__name__)
    return outcomes, _rows(w, outbox_after)


def _as_set(rows: list) -> list:
    return sorted(map(repr, rows))


BATCH_SCENARIOS = [s for s in SCENARIOS if s is not low_stock] + [batch_mixed]


@pytest.mark.parametrize("scenario", BATCH_SCENARIOS, ids=[s.__name__ for s in BATCH_SCENARIOS])
def test_a_batch_through_the_statement_leaves_the_rows_of_one_notice_after_another(settings, make_product, scenario):
    # given the same scenario twice
    # when one copy is confirmed as one batch and the other one notice after another on the ORM path
    batch = _run_batch(settings, make_product, scenario, "S")
    reference = _run_sequential(settings, make_product, scenario, "R")
    # then each notice has the same outcome and the same rows are written
    assert batch[0] == reference[0]
    for table in reference[1]:
        assert _as_set(batch[1][table]) == _as_set(reference[1][table]), table


def _run_sequential(settings, make_product, scenario, tag: str) -> tuple[list, dict]:
    settings.KAMI_CONFIRM_SQL = False
    w = Numbered(tag=tag, make_product=make_product)
    notices = _batch_order(scenario(w))
    outbox_after = OutboxMessage.objects.order_by("-id").values_list("id", flat=True).first() or 0
    outcomes = []
    for gateway, notice in notices:
        try:
            outcomes.append(payment_confirm(gateway=gateway, notice=notice).value)
        except Exception as exc:
            outcomes.append(type(exc).__name__)
    return outcomes, _rows(w, outbox_after)


def test_the_mixed_batch_covers_what_it_claims(settings, make_product):
    outcomes, rows = _run_batch(settings, make_product, batch_mixed, "M")
    # in order-number order: a 2, a's twin, b 3, c 2 (short: 1 key left), d 1 (the last key), e 2 of q, e's second
    # trade (the buyer paid twice), f's money
    assert outcomes == ["fulfilled", "duplicate", "fulfilled", "awaiting_stock", "fulfilled", "fulfilled", "flagged",
                        "flagged"]
    assert sorted(k["order_id"] for k in rows["order_keys"]) == [0, 0, 1, 1, 1, 3, 4, 4]


def test_the_batch_statement_prepared_leaves_the_same_outcomes(settings, make_product):
    postgres_only()
    # given a connection that prepares statements (DATABASE_URL's ?prepare_threshold=, here from the first run)
    connection.ensure_connection()
    connection.connection.prepare_threshold = 0
    try:
        # when the mixed batch runs twice: prepared, then through the prepared statement
        runs = [_run_batch(settings, make_product, batch_mixed, tag)[0] for tag in ("P", "Q")]
        with connection.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM pg_prepared_statements WHERE statement LIKE %s", ["%WITH given AS%"])
            prepared = cursor.fetchone()[0]
    finally:
        connection.connection.prepare_threshold = None
    # then it was prepared, and each run's outcomes are those of the statement unprepared
    assert prepared == 1
    assert runs == [["fulfilled", "duplicate", "fulfilled", "awaiting_stock", "fulfilled", "fulfilled", "flagged",
                     "flagged"]] * 2


def test_a_low_stock_alert_in_a_batch_is_sent_once(settings, make_product):
    # the batch sells its keys at once, so the alert counts what is left after the whole batch
    outcomes, rows = _run_batch(settings, make_product, low_stock, "L")
    assert outcomes == ["fulfilled", "fulfilled"]
    alerts = [m["payload"] for m in rows["outbox"] if m["kind"] == "admin_alert"]
    assert [a["event"] for a in alerts] == ["low_stock"]


@pytest.mark.parametrize("statistics", STATISTICS)
def test_the_batch_statement_finds_orders_by_number_and_claims_from_the_partial_index_after_analyze(make_product,
                                                                                                   statistics):
    postgres_only()
    # given thousands of pending orders and of sold keys
    w = World(tag="F", make_product=make_product)
    hot = w.product(stock=0)
    add_keys(hot, (f"HOT-{i}" for i in range(3000)))
    orders = [w.order(hot, 1) for _ in range(8)]
    Order.objects.bulk_create([Order(**{**{f.attname: getattr(orders[0], f.attname) for f in Order._meta.concrete_fields
                                           if f.attname != "id"}, "order_no": f"BULK{i:08d}", "token_hash": f"t{i}"})
                               for i in range(3000)])
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE orders_order")
    sold_ahead(hot, sold=2500, statistics=statistics)
    # when the batch statement is explained for the eight (in a transaction that rolls back)
    now = clock.now()
    notices = [w.paid(o, f"T{i}") for i, o in enumerate(orders)]
    params = {"n": list(range(8)), "order_no": [n.order_no for _, n in notices], "gateway": ["sandbox"] * 8,
              "trade_no": [n.trade_no for _, n in notices], "amount": [n.amount for _, n in notices],
              "currency": [n.currency for _, n in notices], "paid_detail": ["{}"] * 8, "now": now,
              "late_after": now - payment_grace()}
    for plan in (_explained(params), _explained(params, generic=True)):  # as planned for its values, and prepared
        # then no step reads the whole key table, and the orders are found by their numbers, not
        # by reading every pending order
        assert "Seq Scan on stock_key" not in plan, plan
        ord_ = plan.split("CTE ord")[1].split("CTE need")[0]
        assert "order_no" in ord_ and "rows=3008" not in ord_ and "Seq Scan on orders_order" not in ord_, plan
        # and the keys come from the partial index in id order, without reading the sold ones
        claim = plan.split("CTE claim")[1].split("CTE enough")[0]
        assert "key_claim" in claim and "stock_key_pkey" not in claim and "Seq Scan" not in claim, plan
        scan = claim.split("Index Scan using key_claim")[1].split("->")[0]  # its own buffers (ord's count above it)
        hits = sum(int(n) for n in re.findall(r"(?:hit|read)=(\d+)", scan))
        assert hits < 50, plan


def _explained(params: dict, *, generic: bool = False) -> str:
    """CONFIRM_POSTGRES_MANY's plan, run in a transaction that rolls back: planned for the values, or
    (`generic`) the plan a prepared statement settles on after five runs (psycopg prepares it where
    DATABASE_URL has ?prepare_threshold=; confirm_sql.binding_cursor), forced at once."""
    names = list(params)
    with transaction.atomic(), connection.cursor() as cursor:
        if not generic:
            cursor.execute("EXPLAIN (ANALYZE, BUFFERS) " + CONFIRM_POSTGRES_MANY, params)
        else:
            numbered = re.sub(r"%\((\w+)\)[sb]", lambda m: f"${names.index(m[1]) + 1}", CONFIRM_POSTGRES_MANY)
            types = "int[], text[], text[], text[], numeric[], text[], jsonb[], timestamptz, timestamptz"
            cursor.execute("SET LOCAL plan_cache_mode = force_generic_plan")
            cursor.execute(f"PREPARE kami_test_many ({types}) AS {numbered}")
            cursor.execute("EXPLAIN (ANALYZE, BUFFERS) EXECUTE kami_test_many ("
                           + ", ".join(f"%({name})s" for name in names) + ")", params)
        plan = "\n".join(r[0] for r in cursor.fetchall())
        if generic:
            cursor.execute("DEALLOCATE kami_test_many")
        transaction.set_rollback(True)
    return plan
