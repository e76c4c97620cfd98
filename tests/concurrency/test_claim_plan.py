"""The claim must read only available keys of one product through its index on every engine
(`key_claim (product_id, status, id)`, or on PostgreSQL the partial `key_claim_available
(product_id, reusable, id) WHERE status = 'available'`; SQLite uses a partial index only for a
literal, not a bound parameter, and MariaDB has none), also after
ANALYZE: a plan that walks the primary key re-reads every sold key on each sale, and one
with no usable index scans the table (DESIGN.md §7)."""
from __future__ import annotations

import io
import re

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from kami.stock.claim import claim_queryset
from kami.stock.bulk import keys_stored
from kami.stock.importer import keys_import
from kami.stock.models import Key
from tests.factories import add_keys, sold_ahead

pytestmark = pytest.mark.django_db(transaction=True)


def _analyze() -> None:
    with connection.cursor() as cursor:
        cursor.execute({"postgresql": "ANALYZE stock_key", "mysql": "ANALYZE TABLE stock_key",
                        "sqlite": "ANALYZE"}[connection.vendor])
        if connection.vendor == "mysql":
            cursor.fetchall()


@pytest.mark.parametrize("statistics", ["after", "before"])
@pytest.mark.parametrize("kind", ["unique", "reusable"])
def test_claim_after_analyze_reads_only_available_keys_through_its_index(make_product, kind, statistics):
    # given thousands of keys already sold, beside the hot product's available ones, and statistics
    # gathered after the sale (the plan regressed to the primary key after ANALYZE: issue 9) or
    # before it, when every key was available (a flash sale right after an import). A reusable
    # product's keys are never sold: it has a few, beside a unique product's thousands.
    hot, other = make_product(kind=kind), make_product()
    add_keys(hot, (f"HOT-{i}" for i in range(8000 if kind == "unique" else 3)))
    add_keys(other, (f"OTHER-{i}" for i in range(3000 if kind == "unique" else 8000)))
    if statistics == "before":
        _analyze()
    sold_from = hot if kind == "unique" else other
    sold = list(Key.objects.filter(product=sold_from).order_by("id").values_list("id", flat=True)[:7500])
    Key.objects.filter(id__in=sold).update(status=Key.Status.SOLD)
    if statistics == "after":
        _analyze()
    # when the real claim query (the one keys_claim runs) is explained
    with transaction.atomic():  # its row locks need a transaction, as in confirm
        query = claim_queryset(product=hot)
        plan = (query[:5] if kind == "unique" else query).explain()
    # then it reads the claim index: no scan of the table or the primary key. The unique claim
    # (LIMIT n) also reads it in id order, with no sort; the reusable one takes every available key
    # of its product, and PostgreSQL may fetch those few by bitmap and sort them (still only them).
    assert "key_claim" in plan, plan  # key_claim_available (partial) or key_claim: both hold available keys together
    assert "Seq Scan" not in plan and "stock_key_pkey" not in plan, plan
    assert "SCAN stock_key" not in plan, plan
    if kind == "unique":
        assert "Sort" not in plan and "filesort" not in plan.lower() and "TEMP B-TREE" not in plan, plan


@pytest.mark.parametrize("statistics", ["after", "before"])
def test_claim_after_analyze_touches_a_few_pages_not_the_sold_keys(make_product, statistics):
    # given 7,500 sold keys ahead of the available ones, and the planner's statistics gathered after
    # the sale, or before it (all keys available: a flash sale right after an import, before
    # autovacuum analyzes again; a claim in plain id order then walked the primary key)
    if connection.vendor != "postgresql":
        pytest.skip("buffer counts are PostgreSQL's EXPLAIN (ANALYZE, BUFFERS)")
    hot = make_product()
    add_keys(hot, (f"HOT-{i}" for i in range(8000)))
    sold_ahead(hot, sold=7500, statistics=statistics)
    # when the claim runs, explained with its buffers
    with transaction.atomic():
        plan = claim_queryset(product=hot)[:5].explain(analyze=True, buffers=True)
    # then it reads a handful of pages, not one per sold key (2,099 buffers after 12k sales before)
    hits = sum(int(n) for n in re.findall(r"(?:hit|read)=(\d+)", plan.split("Planning")[0]))
    assert hits < 50, plan


def test_duplicate_lookup_probes_the_unique_index_after_the_first_chunk(make_product):
    # given statistics gathered on another product's keys (what a new product's import meets)
    if connection.vendor != "postgresql":
        pytest.skip("the probe query is PostgreSQL's own; the others use fingerprint IN (…)")
    old = make_product()
    add_keys(old, (f"OLD-{i}" for i in range(3000)))
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE stock_key")
    new = make_product()
    # when the new product's import has stored its first chunk
    keys_import(product=new, stream=io.BytesIO(b"".join(b"NEW-%d\n" % i for i in range(2500))), source="t",
                batch_size=2000)
    with connection.cursor() as cursor, CaptureQueriesContext(connection) as queries:
        keys_stored(new.pk, ["ab" * 32, "cd" * 32])
        cursor.execute("EXPLAIN " + queries.captured_queries[-1]["sql"])
        plan = "\n".join(row[0] for row in cursor.fetchall())
    # then each fingerprint is one probe of the unique index
    assert "key_unique_per_product" in plan, plan
