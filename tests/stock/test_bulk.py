"""The import's write path (kami.stock.bulk) and bulk sealing (keys_seal_bulk) against their
references: the ORM's bulk_create and key_seal."""
from __future__ import annotations

import pytest
from django.db import connection

from kami.core.crypto import normalise_key
from kami.stock import bulk
from kami.stock.importer import Sealed, batch_start, write_chunk
from kami.stock.models import ImportBatch, Key
from kami.stock.vault import key_fingerprint, key_open, key_seal, keys_seal_bulk
from tests.stock.helpers import import_lines

pytestmark = pytest.mark.django_db(transaction=True)

TEXTS = ["PLAIN-1", "充值卡-中文-8866", "🎁🎉-GIFT-✨", "user@example.com\tpassw0rd", "CAF\u00c9-1", "Y" * 1024]


def test_bulk_sealing_opens_and_fingerprints_like_key_seal(make_product):
    # given
    product = make_product()
    # when
    sealed = keys_seal_bulk([normalise_key(t) for t in TEXTS], product_id=product.pk)
    # then: same key id and fingerprint as key_seal, a fresh nonce per key, and each opens for its product only
    for text, (key_id, blob, fingerprint) in zip(TEXTS, sealed):
        one_id, one_blob, one_fingerprint = key_seal(text, product_id=product.pk)
        assert (key_id, fingerprint, len(blob)) == (one_id, one_fingerprint, len(one_blob))
        assert fingerprint == key_fingerprint(text)
        key = Key(product_id=product.pk, key_id=key_id, ciphertext=blob, fingerprint=fingerprint, seal=Key.Seal.BOUND)
        assert key_open(key).reveal() == text
    assert len({blob[:12] for _, blob, _ in sealed}) == len(TEXTS)
    other = Key(product_id=product.pk + 1, key_id=sealed[0][0], ciphertext=sealed[0][1], fingerprint=sealed[0][2])
    with pytest.raises(Exception, match="does not open"):
        key_open(other)


@pytest.mark.parametrize("kind", ["unique", "reusable"])
def test_rows_written_are_the_rows_the_orm_writes(make_product, kind):
    # given: the same keys stored by the import's write path and by the ORM's bulk_create
    fast, orm = make_product(kind=kind), make_product(kind=kind)
    import_lines(fast, TEXTS)
    batch, _ = batch_start(product=orm, source="orm", actor="test")
    rows = []
    for text in TEXTS:
        key_id, blob, fingerprint = key_seal(text, product_id=orm.pk)
        rows.append(Key(product=orm, batch=batch, key_id=key_id, ciphertext=blob, fingerprint=fingerprint,
                        reusable=kind == "reusable", seal=Key.Seal.BOUND))
    Key.objects.bulk_create(rows)
    # then: every column alike but the product's own (ids, product, batch, ciphertext, time)
    columns = ("key_id", "fingerprint", "status", "void_reason", "reusable", "seal", "sold_at")
    assert (list(Key.objects.filter(product=fast).order_by("id").values_list(*columns))
            == list(Key.objects.filter(product=orm).order_by("id").values_list(*columns)))
    assert [key_open(k).reveal() for k in Key.objects.filter(product=fast).order_by("id")] == TEXTS
    assert Key.objects.filter(product=fast, created_at__isnull=True).count() == 0


def test_a_chunk_reports_stored_keys_and_its_own_earlier_ones(make_product):
    # given: a key stored by another batch, and a chunk of this batch already written
    product = make_product()
    import_lines(product, ["OLD"])
    batch, report = batch_start(product=product, source="t", actor="test")
    write_chunk(batch=batch, chunk=_sealed(product, ["A", "B"], first_line=1), report=report)
    # when: the next chunk repeats both, and brings a new key
    stored = write_chunk(batch=batch, chunk=_sealed(product, ["OLD", "B", "C"], first_line=3), report=report)
    # then
    assert stored == 1 and report.imported == 3
    assert (report.duplicate_stored_lines, report.duplicate_in_file_lines) == ([3], [4])
    assert ImportBatch.objects.get(pk=batch.pk).duplicates == 2


def test_the_staged_insert_is_arbitrated_by_the_unique_index(make_product):
    if connection.vendor != "postgresql":
        pytest.skip("the staged INSERT … ON CONFLICT is PostgreSQL's own")
    product = make_product()
    import_lines(product, ["K-1"])
    names = bulk._names()
    with connection.cursor() as cursor:
        cursor.execute("BEGIN")
        try:
            cursor.execute(bulk.STAGE_CREATE_POSTGRES)
            cursor.execute("EXPLAIN " + bulk.STAGE_INSERT_POSTGRES.format(**names),
                           [product.pk, None, "available", None, "", False, 2])
            plan = "\n".join(row[0] for row in cursor.fetchall())
        finally:
            cursor.execute("ROLLBACK")
    assert "Conflict Arbiter Indexes: key_unique_per_product" in plan, plan


def _sealed(product, texts: list[str], *, first_line: int) -> list[Sealed]:
    return [Sealed(first_line + i, *s) for i, s in enumerate(keys_seal_bulk(texts, product_id=product.pk))]
