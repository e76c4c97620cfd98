"""What a cached storefront page is keyed on, read as prepared statements (issue 9).

A cached page (storefront.fragments.page_cached) is served when nothing it is drawn from has
changed, so every request reads that state fresh: the products on the page with every column,
their categories and stock counts (capped as the badges count them, stock.selectors), the
tiers their prices come from, the enabled gateways. Built through the ORM each time, those few
statements cost ~1.5 ms of Python to *build* for ~0.1 ms to run (docs/performance.md). Here each
is an ORM queryset compiled once per server thread and shape (`rows`), then run as its SQL with
the request's values: the statement is the ORM's own, on every engine, so the ORM queryset is
the reference it is tested against (tests/test_storefront_reads.py), and no SQL text is kept.

The rows are read raw (no converters, no model instances): the key only needs them to differ
when the state does. The page itself, on a miss, is drawn by the views' ORM code as before.
On SQLite a thread asks the database first whether anything was written since it last read
(`_unless_unchanged`): if not, the rows it read then are the state, with one statement run.
"""
from __future__ import annotations

import threading
from collections.abc import Callable

from django.db import connections
from django.db.models import QuerySet

from kami.catalog.models import Product, TierPrice
from kami.catalog.services import TIER_MIN_QUANTITY
from kami.payments.models import GatewayAccount
from kami.stock.selectors import available_left_capped
from kami.storefront.stock import LOW_STOCK_SHOWN_BELOW, badge_threshold

_compiled = threading.local()  # a connection belongs to one thread, and so do its statements
# Every column of a product and of its category: a column added later is keyed with no change here.
_PRODUCT_COLUMNS = tuple(f.attname for f in Product._meta.concrete_fields)
_CATEGORY_COLUMNS = tuple(f"category__{f.attname}" for f in Product._meta.get_field("category").related_model._meta.concrete_fields)
_LOW_STOCK_AT = _PRODUCT_COLUMNS.index("low_stock")
_MIN_QTY_AT = _PRODUCT_COLUMNS.index("min_qty")
_MEMO_MAX = 256  # states kept per thread between two writes (slugs that do not exist are asked too)


def rows(build: Callable[..., QuerySet], *shape: object, **values: str) -> list[tuple]:
    """The rows of `build(*shape, **values)`, compiled once per thread and `shape` (values that
    change the SQL text itself, such as a LIMIT), then run with `values` as its parameters. Each
    value must reach the statement as one parameter unchanged (an exact match, not `icontains`)."""
    statements = _compiled.__dict__.setdefault("statements", {})
    statement = statements.get((build, shape))
    if statement is None:
        statement = statements[(build, shape)] = _compile(build, shape, tuple(values))
    alias, sql, params, slots = statement
    with connections[alias].cursor() as cursor:
        if params is None:  # SQLite, its constants written in: the request's values bound by name
            cursor.execute(sql, {slot: values[slot] for slot in slots})
        else:
            cursor.execute(sql, [values[slot] if slot else p for p, slot in zip(params, slots)])
        return list(cursor.fetchall())  # a tuple on MySQLdb


def _compile(build: Callable[..., QuerySet], shape: tuple, names: tuple[str, ...]) -> tuple:
    """(database alias, SQL, parameters, the value name each parameter slot takes or None); on
    SQLite with its constants written in, (alias, SQL, None, the names of its `%(name)s` slots)."""
    marks = {name: f"\x00kami-{name}\x00" for name in names}  # never a real slug or name
    queryset = build(*shape, **marks)
    sql, params = queryset.query.get_compiler(queryset.db).as_sql()
    by_mark = {mark: name for name, mark in marks.items()}
    slots = tuple(by_mark.get(p) if isinstance(p, str) else None for p in params)
    if sorted(filter(None, slots)) != sorted(names):
        raise ValueError(f"{build.__name__}: each of {names} must be exactly one parameter of the statement")
    if connections[queryset.db].vendor == "sqlite" and "%%" not in sql:
        return queryset.db, *_constants_inlined(queryset.db, sql, params, slots)
    return queryset.db, sql, tuple(params), slots


def _constants_inlined(alias: str, sql: str, params, slots) -> tuple:
    """The statement's own constants (a key's status, a count's default: never a request's value)
    written into its SQL, quoted by the engine's schema editor; the request's values stay bound.
    SQLite prepares a statement anew on each run when a bound value could pick a partial index
    (`status = ?` and key_claim_available): with the badge counts in it, 80 µs a run, not 15.

    The values left are bound by name, `%(slug)s` (the style cursor.execute documents for a dict
    on every engine): with `%s` placeholders Django's SQLite cursor rewrites them to `?` by a
    regular expression over the whole statement on every run, 27 µs for the products' 1.8 kB
    statement; with names it formats them, ~1 µs."""
    quote = connections[alias].schema_editor().quote_value
    written = [f"%({slot})s" if slot else quote(p) for p, slot in zip(params, slots)]
    if any("%" in w for w, slot in zip(written, slots) if not slot):  # would read as a placeholder
        return sql, tuple(params), slots
    return sql % tuple(written), None, tuple(slot for slot in slots if slot)


def _cap(product_rows: list[tuple]) -> int:
    """The count cap these products' badges need, as storefront.stock.stock_states takes it."""
    return max([LOW_STOCK_SHOWN_BELOW, *(badge_threshold(low_stock=row[_LOW_STOCK_AT]) for row in product_rows)])


def _with_counts(build: Callable[..., QuerySet], **values: str) -> list[tuple]:
    """Product rows with their capped counts, the cap theirs: a statement per cap is compiled
    once, the last cap is tried first, and read again only when the rows ask for another."""
    caps = _compiled.__dict__.setdefault("caps", {})
    cap = caps.get(build, LOW_STOCK_SHOWN_BELOW)
    found = rows(build, cap, **values)
    needed = _cap(found)
    if needed != cap:
        caps[build] = needed
        found = rows(build, needed, **values)
    return found


def _products_on_sale(cap: int) -> QuerySet:
    return (Product.objects.filter(active=True).order_by("pk").annotate(left=available_left_capped(cap=cap))
            .values_list(*_PRODUCT_COLUMNS, *_CATEGORY_COLUMNS, "left"))


def _product_on_sale(cap: int, *, slug: str) -> QuerySet:
    return _products_on_sale(cap).filter(slug=slug)


def _tiers_on_sale() -> QuerySet:
    return (TierPrice.objects.filter(product__active=True, product__min_qty__gte=TIER_MIN_QUANTITY)
            .order_by("product_id", "min_quantity").values_list("product_id", "min_quantity", "unit_price"))


def _tiers_of(*, slug: str) -> QuerySet:
    return TierPrice.objects.filter(product__slug=slug).order_by("min_quantity").values_list("min_quantity", "unit_price")


def _gateways() -> QuerySet:
    return GatewayAccount.objects.filter(enabled=True).order_by("name").values_list("name")


def catalogue_state() -> tuple:
    """What the home page is drawn from, in any filter: every product on sale with its category
    and stock count, the tiers of those priced past one item (home.py prices each card at its
    minimum quantity), the enabled gateways. Two statements, three when a tier can apply."""
    return _unless_unchanged(("catalogue",), _catalogue_read)


def product_state(*, slug: str) -> tuple:
    """What a product page is drawn from: the product on sale with its category and stock count,
    its tiers, the enabled gateways. Three statements."""
    return _unless_unchanged(("product", slug), lambda: _product_read(slug))


def _catalogue_read() -> tuple:
    products = _with_counts(_products_on_sale)
    tiers = rows(_tiers_on_sale) if any(row[_MIN_QTY_AT] >= TIER_MIN_QUANTITY for row in products) else []
    return products, tiers, rows(_gateways)


def _product_read(slug: str) -> tuple:
    return _with_counts(_product_on_sale, slug=slug), rows(_tiers_of, slug=slug), rows(_gateways)


def _unless_unchanged(key: tuple, read: Callable[[], tuple]) -> tuple:
    """`read()`; on SQLite, what it answered last on this thread's connection when nothing was
    written to the database since. SQLite says so itself: `PRAGMA data_version` changes when
    another connection, in any process, has committed since this one last asked, and the
    connection's `total_changes` counts its own writes (a rolled-back one too: it only errs
    towards reading again). The stamp is read before the rows, so a commit landing between the
    two is seen by the next request. Inside a transaction the rows are read as before: a write
    of its own there may yet be rolled back. One statement instead of two or three (a page's
    read 14 µs instead of ~50, docs/performance.md), and no step per row in which another
    server thread can take the GIL."""
    alias = Product.objects.db
    connection = connections[alias]
    if (connection.vendor != "sqlite" or TierPrice.objects.db != alias or GatewayAccount.objects.db != alias
            or not connection.get_autocommit()):
        return read()
    with connection.cursor() as cursor:
        cursor.execute("PRAGMA data_version")
        stamp = (connection.connection, cursor.fetchone()[0], connection.connection.total_changes)
    memo = _compiled.__dict__.setdefault("memo", {})
    if memo.get("stamp") != stamp or len(memo) > _MEMO_MAX:  # a change, a new connection, or many slugs asked
        memo.clear()
        memo["stamp"] = stamp
    found = memo.get(key)
    if found is None:
        found = memo[key] = tuple(map(tuple, read()))  # immutable: fragments may serve a page again for it
    return found
