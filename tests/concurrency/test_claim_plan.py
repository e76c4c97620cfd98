"""The claim must read only available keys of one product through the `key_claim` index, on
every engine: a plan that walks the primary key re-reads every sold key on each sale, and one
with no usable index scans the table (DESIGN.md §7)."""
from __future__ import annotations

import io

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from kami.stock.claim import claim_order
from kami.stock.importer import _stored, keys_import
from kami.stock.models import Key
from tests.factories import add_keys

pytestmark = pytest.mark.django_db(transaction=True)


def claim_query(product):
    return (Key.objects.filter(product_id=product.pk, status=Key.Status.AVAILABLE)
            .select_for_update(skip_locked=True).order_by(*claim_order()).only("id")[:5])


def test_claim_uses_the_claim_index(make_product):
    # given two products and a stock where most keys of the hot one are already sold
    hot, other = make_product(), make_product()
    add_keys(hot, (f"HOT-{i}" for i in range(6000)))
    add_keys(other, (f"OTHER-{i}" for i in range(3000)))
    sold = list(Key.objects.filter(product=hot).order_by("id").values_list("id", flat=True)[:5500])
    Key.objects.filter(id__in=sold).update(status=Key.Status.SOLD)
    with connection.cursor() as cursor:
        cursor.execute({"postgresql": "ANALYZE stock_key", "mysql": "ANALYZE TABLE stock_key",
                        "sqlite": "ANALYZE"}[connection.vendor])
        if connection.vendor == "mysql":
            cursor.fetchall()
    # when
    with transaction.atomic():
        plan = claim_query(hot).explain()
    # then
    assert "key_claim" in plan, plan
    assert "Seq Scan" not in plan and "filesort" not in plan.lower() and "TEMP B-TREE" not in plan, plan


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
        _stored(new.pk, ["ab" * 32, "cd" * 32])
        cursor.execute("EXPLAIN " + queries.captured_queries[-1]["sql"])
        plan = "\n".join(row[0] for row in cursor.fetchall())
    # then each fingerprint is one probe of the unique index
    assert "key_unique_per_product" in plan, plan
