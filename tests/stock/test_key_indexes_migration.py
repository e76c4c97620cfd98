"""Migrations stock 0009 and 0010, the key table's indexes and constraints.

0009: a key's batch is provenance, checked by no database constraint (its per-row check was a
fifth of the PostgreSQL import's floor, docs/performance.md "Import"); the product's constraint,
the batch index and what a batch deletion through Django does all stay.
0010: MariaDB, which has no partial indexes, loses the full-index copy Django built of
`key_claim_available` (its claim read every sold key through it); the others keep it, partial."""
from __future__ import annotations

import pytest
from django.db import connection

from kami.stock.importer import batch_start
from kami.stock.models import ImportBatch, Key
from tests.factories import add_keys
from tests.migrating import back_to_latest, migrate_app  # noqa: F401 (fixture)

pytestmark = pytest.mark.django_db(transaction=True)

BEFORE, AFTER = [("stock", "0008_import_files")], [("stock", "0009_key_batch_no_constraint")]
LATEST = [("stock", "0010_key_claim_available_not_on_mariadb")]


def _key_columns() -> dict[str, dict]:
    """{column: {"foreign_key": referenced table or None, "index": indexed alone}} of stock_key."""
    with connection.cursor() as cursor:
        constraints = connection.introspection.get_constraints(cursor, "stock_key")
    found: dict[str, dict] = {"batch_id": {"foreign_key": None, "index": False},
                              "product_id": {"foreign_key": None, "index": False}}
    for c in constraints.values():
        if c["columns"] and c["columns"][0] in found:
            column = found[c["columns"][0]]
            if c["foreign_key"]:
                column["foreign_key"] = c["foreign_key"][0]
            if c["index"] and c["columns"] == ["batch_id"]:
                column["index"] = True
    return found


def test_the_key_batch_has_an_index_and_no_constraint_the_product_keeps_its_constraint(back_to_latest):
    # given the schema before the migration: both foreign keys checked by the database
    migrate_app("stock", BEFORE)
    assert _key_columns()["batch_id"]["foreign_key"] == "stock_importbatch"
    # when
    migrate_app("stock", AFTER)
    # then
    columns = _key_columns()
    assert columns["batch_id"] == {"foreign_key": None, "index": True}
    assert columns["product_id"]["foreign_key"] == "catalog_product"


def test_keys_stored_before_the_migration_keep_their_batch_and_product(back_to_latest):
    # given keys of a batch, stored before the migration (SQLite rebuilds the table for it)
    old = migrate_app("stock", BEFORE)
    product = old.get_model("catalog", "Product").objects.create(slug="u", name="U", price="1.00")
    batch = old.get_model("stock", "ImportBatch").objects.create(product=product, source="old")
    keys = old.get_model("stock", "Key").objects
    for i in range(3):
        keys.create(product=product, batch=batch if i < 2 else None, key_id="ktest", ciphertext=b"x",
                    fingerprint=f"{i:064x}")
    # when
    new = migrate_app("stock", AFTER)
    # then
    rows = new.get_model("stock", "Key").objects.order_by("id").values_list("product_id", "batch_id", "fingerprint")
    assert list(rows) == [(product.pk, batch.pk, f"{0:064x}"), (product.pk, batch.pk, f"{1:064x}"),
                          (product.pk, None, f"{2:064x}")]


def test_deleting_a_batch_through_django_still_unlinks_its_keys(make_product):
    # given keys of a batch
    product = make_product()
    batch, _ = batch_start(product=product, source="test", actor="test")
    keys = add_keys(product, ["A-1", "A-2"])
    Key.objects.filter(id__in=[k.id for k in keys]).update(batch=batch)
    # when the batch is deleted through the ORM
    ImportBatch.objects.filter(pk=batch.pk).delete()
    # then its keys stay, without a batch (on_delete=SET_NULL, done by Django, not the database)
    assert list(Key.objects.filter(product=product).values_list("batch_id", flat=True)) == [None, None]


def _key_indexes() -> set[str]:
    with connection.cursor() as cursor:
        return {name for name, c in connection.introspection.get_constraints(cursor, "stock_key").items() if c["index"]}


def test_the_partial_claim_index_exists_only_where_it_can_be_partial(back_to_latest):
    # given the schema before 0010: Django built key_claim_available on every engine
    migrate_app("stock", AFTER)
    assert "key_claim_available" in _key_indexes()
    # when
    migrate_app("stock", LATEST)
    # then MariaDB has only key_claim for its claim; the others keep both
    partial = connection.features.supports_partial_indexes
    assert {"key_claim", "key_claim_available"} & _key_indexes() == (
        {"key_claim", "key_claim_available"} if partial else {"key_claim"})
    # and back: 0010 undone builds it again
    migrate_app("stock", AFTER)
    assert "key_claim_available" in _key_indexes()
