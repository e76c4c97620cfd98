"""The cached pages' state read by prepared statements (kami/storefront/reads.py): each answers
what its ORM queryset answers, on every engine, with the request's own values; the stock count
follows each product's own threshold; and a page drawn while its state changed is not kept."""
from __future__ import annotations

import threading
from decimal import Decimal

import pytest
from django.core.cache import caches
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from kami.catalog.models import Product
from kami.catalog.services import tier_prices_save
from kami.storefront import reads
from kami.storefront.fragments import CACHE_ALIAS, page_cached
from tests.factories import add_keys

pytestmark = pytest.mark.django_db


def orm_rows(queryset) -> list[tuple]:
    """The queryset's own rows, as the ORM evaluates it."""
    return [tuple(row) for row in queryset]


def prepared_rows(build, *shape, **values) -> list[tuple]:
    """The prepared statement's raw rows, through the ORM's converters for the same statement."""
    queryset = build(*shape, **values)
    compiler = queryset.query.get_compiler(queryset.db)
    compiler.as_sql()
    return [tuple(row) for row in compiler.results_iter(results=[reads.rows(build, *shape, **values)])]


@pytest.fixture
def catalogue(make_product):
    """Products of every kind of stock, one in a category, one with tiers from two up."""
    few, many = make_product("few", name="Few"), make_product("many", name="Many", low_stock=50, min_qty=2)
    add_keys(few, ["F-1", "F-2"])
    add_keys(many, [f"M-{n}" for n in range(30)])
    make_product("none", name="None")
    make_product("off", name="Off", active=False)
    tier_prices_save(product=many, tiers={3: Decimal("9.00"), 5: Decimal("8.00")}, actor="test")
    return few, many


def test_each_statement_answers_what_its_orm_queryset_answers(catalogue):
    for build, shape, values in [(reads._products_on_sale, (10,), {}), (reads._products_on_sale, (50,), {}),
                                 (reads._product_on_sale, (50,), {"slug": "many"}), (reads._tiers_on_sale, (), {}),
                                 (reads._tiers_of, (), {"slug": "many"}), (reads._gateways, (), {})]:
        assert prepared_rows(build, *shape, **values) == orm_rows(build(*shape, **values)), build.__name__
    assert len(orm_rows(reads._products_on_sale(10))) == 3 and len(orm_rows(reads._tiers_of(slug="many"))) == 2


def test_a_statement_compiled_once_reads_each_request_its_own_values(catalogue):
    few, many = catalogue
    # when the product statement, compiled for one slug, is run for others
    first, second, missing = (reads.product_state(slug=slug)[0] for slug in ("few", "many", "off"))
    # then each reads its own product, and a product off sale reads nothing
    assert [row[0] for row in first] == [few.pk] and [row[0] for row in second] == [many.pk] and missing == []
    assert reads.product_state(slug="many")[1] == reads.rows(reads._tiers_of, slug="many") != []


def test_a_value_that_is_not_one_parameter_is_refused():
    def by_name(*, name: str):
        return Product.objects.filter(name__icontains=name).values_list("pk")

    with pytest.raises(ValueError, match="exactly one parameter"):
        reads.rows(by_name, name="x")


def test_the_count_follows_each_products_own_threshold(catalogue):
    # given a product that wants counts shown below 50, read first with the smallest cap
    few, many = catalogue
    # when its page's state and the catalogue's are read
    product_rows, _, _ = reads.product_state(slug="many")
    catalogue_rows, tiers, _ = reads.catalogue_state()
    # then its 30 keys are counted in full, under its threshold, and the others up to theirs
    assert product_rows[0][-1] == 30
    assert {row[0]: row[-1] for row in catalogue_rows} == {few.pk: 2, many.pk: 30, Product.objects.get(slug="none").pk: 0}
    assert [row[:2] for row in tiers] == [(many.pk, 3), (many.pk, 5)]  # its cards are priced from two up


def test_a_page_drawn_while_its_state_changed_is_not_kept(rf):
    # given a page whose state changes while it is drawn
    caches[CACHE_ALIAS].clear()
    drawn = []

    def context():
        drawn.append(1)
        return {"shelves": []}

    request = rf.get("/")
    page_cached(request, "storefront/home.html", state=("before",), state_again=lambda: ("after",), context=context)
    # when the next request reads the state as it was before
    page_cached(request, "storefront/home.html", state=("before",), state_again=lambda: ("before",), context=context)
    page_cached(request, "storefront/home.html", state=("before",), state_again=lambda: ("before",), context=context)
    # then the first drawing was not kept under it; the second was
    assert len(drawn) == 2


def test_on_sqlite_a_statement_binds_only_the_requests_values(catalogue):
    # SQLite prepares a statement again on every run whose bound value could pick a partial
    # index; the statements' own constants are written into them, the slug stays bound.
    if connection.vendor != "sqlite":
        pytest.skip("the other engines bind every value")
    reads.product_state(slug="few")  # its count capped at 10
    _, sql, params, slots = reads._compiled.statements[(reads._product_on_sale, (10,))]
    assert params is None and slots == ("slug",) and "= 'available'" in sql and sql.count("%(slug)s") == 1


def read_counted(read) -> tuple[object, int]:
    """What `read()` answers (its parts as lists: a remembered state is kept as tuples), and how
    many statements it ran."""
    with CaptureQueriesContext(connection) as ran:
        found = read()
    return as_read(found), len(ran)


def as_read(state: tuple) -> tuple:
    return tuple(list(part) for part in state)


@pytest.mark.django_db(transaction=True)
def test_on_sqlite_an_unchanged_database_answers_the_last_read_and_every_write_is_seen(catalogue):
    # The rows are read again only when the database says something was written since: by
    # another connection (PRAGMA data_version) or by this one (total_changes).
    if connection.vendor != "sqlite":
        pytest.skip("the other engines read the rows on every request")
    few, many = catalogue
    fresh = reads._catalogue_read
    # given the state read once
    first, _ = read_counted(reads.catalogue_state)
    # when it is read again with nothing written: then only the pragma runs, and the answer is the same
    assert read_counted(reads.catalogue_state) == (first, 1) and first == as_read(fresh())
    assert read_counted(lambda: reads.product_state(slug="few"))[1] > 1
    assert read_counted(lambda: reads.product_state(slug="few")) == (as_read(reads._product_read("few")), 1)
    # when this connection adds a key: then the next read runs the statements and sees it
    add_keys(few, ["F-3"])
    after, ran = read_counted(reads.catalogue_state)
    assert ran > 1 and after == as_read(fresh()) != first
    # when another connection commits (a server thread of its own, with its own connection)
    seen = as_read(reads.catalogue_state())

    def elsewhere():
        try:
            Product.objects.filter(pk=many.pk).update(name="Many, renamed")
        finally:
            connection.close()

    thread = threading.Thread(target=elsewhere)
    thread.start()
    thread.join()
    # then the next read sees it too
    after = as_read(reads.catalogue_state())
    assert after == as_read(fresh()) != seen and "Many, renamed" in {row[2] for row in after[0]}


@pytest.mark.django_db(transaction=True)
def test_on_sqlite_a_write_rolled_back_leaves_no_stale_state(catalogue):
    if connection.vendor != "sqlite":
        pytest.skip("the other engines read the rows on every request")
    few, _ = catalogue
    before = as_read(reads.product_state(slug="few"))
    # given a transaction that writes, reads the state, and rolls back
    with pytest.raises(RuntimeError), transaction.atomic():
        Product.objects.filter(pk=few.pk).update(name="Never")
        inside, ran = read_counted(lambda: reads.product_state(slug="few"))
        raise RuntimeError("rolled back")
    # then inside it the rows were read, not remembered, and after it the state is as before
    assert ran > 1 and inside[0][0][2] == "Never"
    assert as_read(reads.product_state(slug="few")) == before == as_read(reads._product_read("few"))


def test_on_the_server_engines_every_read_runs_its_statements(catalogue):
    if connection.vendor == "sqlite":
        pytest.skip("SQLite asks the database whether anything changed")
    reads.catalogue_state()
    assert read_counted(reads.catalogue_state)[1] == 3
