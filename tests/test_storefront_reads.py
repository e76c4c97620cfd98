"""The cached pages' state read by prepared statements (kami/storefront/reads.py): each answers
what its ORM queryset answers, on every engine, with the request's own values; the stock count
follows each product's own threshold; and a page drawn while its state changed is not kept."""
from __future__ import annotations

from decimal import Decimal

import pytest
from django.core.cache import caches
from django.db import connection

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
    assert slots == ["slug"] and len(params) == 1 and "= 'available'" in sql
