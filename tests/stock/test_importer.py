"""keys_import: what a merchant's real files contain, and what the report says about them."""
from __future__ import annotations

import io
import threading

import pytest
from django.db import connection

from kami.audit.models import AuditLog
from kami.catalog.models import Product
from kami.stock.models import ImportBatch, Key
from kami.stock.report import SAMPLE
from kami.stock.services import keys_import
from tests.stock.helpers import import_bytes, import_lines, stored_keys

pytestmark = pytest.mark.django_db(transaction=True)


def test_import_stores_keys_and_records_the_batch(make_product):
    # given
    product = make_product()
    # when
    report = import_lines(product, ["AAAA-1111", "BBBB-2222", "CCCC-3333"], actor="alice", source="file keys.txt")
    # then
    assert (report.imported, report.duplicates, report.invalid, report.blank) == (3, 0, 0, 0)
    assert stored_keys(product) == ["AAAA-1111", "BBBB-2222", "CCCC-3333"]
    batch = ImportBatch.objects.get()
    assert (batch.imported, batch.duplicates, batch.invalid, batch.actor, batch.source) == (3, 0, 0, "alice", "file keys.txt")
    assert batch.finished_at is not None
    assert set(Key.objects.values_list("batch_id", flat=True)) == {batch.pk}
    audit = AuditLog.objects.get(action="keys.import")
    assert (audit.actor, audit.object_id, audit.detail["imported"], audit.detail["batch"]) == ("alice", product.slug, 3, batch.pk)


def test_duplicates_in_file_and_already_stored_are_told_apart(make_product):
    # given: two keys stored by an earlier import
    product = make_product()
    import_lines(product, ["OLD-1", "OLD-2"])
    # when: a file repeats one of them, and repeats a new key twice, across chunk boundaries
    lines = ["NEW-1", "OLD-1", "NEW-2", "NEW-1", "NEW-3", "NEW-2", "OLD-2", "NEW-1"]
    report = import_lines(product, lines, batch_size=3)
    # then: line numbers are 1-based and say which kind each duplicate is
    assert report.imported == 3
    assert report.duplicate_in_file_lines == [4, 6, 8]
    assert report.duplicate_stored_lines == [2, 7]
    assert (report.duplicate_in_file, report.duplicate_stored, report.duplicates) == (3, 2, 5)
    assert stored_keys(product) == ["OLD-1", "OLD-2", "NEW-1", "NEW-2", "NEW-3"]
    assert ImportBatch.objects.order_by("id").last().duplicates == 5


def test_duplicates_inside_one_chunk_are_in_file_duplicates(make_product):
    product = make_product()
    report = import_lines(product, ["A", "B", "A", "A"])
    assert report.duplicate_in_file_lines == [3, 4] and report.duplicate_stored == 0


def test_same_key_in_two_products_is_not_a_duplicate(make_product):
    one, two = make_product(), make_product()
    import_lines(one, ["SHARED-KEY"])
    assert import_lines(two, ["SHARED-KEY"]).imported == 1


def test_invalid_lines_are_reported_by_line_number_and_skipped(make_product):
    # given: bad UTF-8, a NUL byte, a 1,025-character line, a stray CR inside a line
    product = make_product()
    data = b"".join([
        b"GOOD-1\n",
        b"\xff\xfeBAD\n",
        b"NUL\x00KEY\n",
        b"X" * 1025 + b"\n",
        b"Y" * 1024 + b"\n",
        b"OLD\rMAC\n",
        b"GOOD-2\n",
    ])
    # when
    report = import_bytes(product, data)
    # then
    assert report.imported == 3
    assert report.invalid_lines == [
        (2, "not valid UTF-8 (save the file as UTF-8)"),
        (3, "contains a NUL byte"),
        (4, "line longer than 1024 characters"),
        (6, "contains control character U+000D"),
    ]
    assert stored_keys(product) == ["GOOD-1", "Y" * 1024, "GOOD-2"]
    assert "line 4: line longer than 1024 characters" in report.summary()
    assert ImportBatch.objects.get().invalid == 4


def test_a_huge_line_is_skipped_without_losing_the_next_one(make_product):
    product = make_product()
    report = import_bytes(product, b"A" * 5_000_000 + b"\nAFTER\n")
    assert report.invalid_lines == [(1, "line longer than 1024 characters")]
    assert stored_keys(product) == ["AFTER"]


def test_1024_four_byte_characters_fit(make_product):
    product = make_product()
    key = "🎉" * 1024
    report = import_lines(product, [key, "🎉" * 1025])
    assert stored_keys(product) == [key]
    assert report.invalid_lines == [(2, "line longer than 1024 characters")]


def test_blank_lines_crlf_bom_and_surrounding_space_are_handled(make_product):
    # given: a Windows file (BOM, CRLF), blank and white-space-only lines, padded keys, no final newline
    product = make_product()
    data = b"\xef\xbb\xbfFIRST\r\n\r\n   \r\n\t SECOND  \r\n\nLAST"
    # when
    report = import_bytes(product, data)
    # then
    assert stored_keys(product) == ["FIRST", "SECOND", "LAST"]
    assert (report.imported, report.blank, report.invalid, report.lines) == (3, 3, 0, 6)
    assert report.bytes_read == len(data)


def test_a_tab_inside_a_key_is_kept(make_product):
    product = make_product()
    import_lines(product, ["user@example.com\tpassw0rd"])
    assert stored_keys(product) == ["user@example.com\tpassw0rd"]


def test_unicode_keys_round_trip_through_encryption(make_product):
    # given: Chinese, emoji, and a decomposed é that NFC composes
    product = make_product()
    keys = ["充值卡-中文-8866", "🎁🎉-GIFT-✨", "CAFE\u0301-1"]
    # when
    report = import_lines(product, keys + ["CAF\u00c9-1"])
    # then: the decomposed and composed é are the same key
    assert stored_keys(product) == ["充值卡-中文-8866", "🎁🎉-GIFT-✨", "CAF\u00c9-1"]
    assert report.duplicate_in_file_lines == [4]


def test_problem_samples_are_bounded_but_counts_are_not(make_product):
    product = make_product()
    data = b"SAME\n" * 500 + b"\xff\n" * 300
    report = import_bytes(product, data)
    assert (report.duplicate_in_file, report.invalid, report.imported) == (499, 300, 1)
    assert len(report.duplicate_in_file_lines) == len(report.invalid_lines) == SAMPLE
    assert report.summary().endswith("; …) · blank 0")


def test_summary_line_reads_like_the_docs(make_product):
    product = make_product()
    import_lines(product, ["S1"])
    report = import_bytes(product, b"S1\nA\nA\n\n" + b"Z" * 2000 + b"\nB\n")
    assert report.summary() == ("imported 2 · duplicates 2 (in file 1, already stored 1) · "
                                "invalid 1 (line 5: line longer than 1024 characters) · blank 1")


def test_reusable_product_accepts_keys_the_same_way(make_product):
    product = make_product(kind="reusable")
    report = import_lines(product, ["SHARED-ACCOUNT", "SHARED-ACCOUNT"])
    assert report.imported == 1 and report.duplicate_in_file == 1
    assert stored_keys(product) == ["SHARED-ACCOUNT"]


def test_progress_is_reported_per_chunk(make_product):
    product = make_product()
    seen = []
    import_lines(product, [f"K{i}" for i in range(10)], batch_size=4, on_progress=lambda r: seen.append(r.imported))
    assert seen == [4, 8, 10]


def test_import_rearms_the_low_stock_alert_once_stock_is_back(make_product):
    # given: a low-stock alert was sent for this episode
    product = make_product(low_stock=3)
    Product.objects.filter(pk=product.pk).update(low_stock_alerted=True)
    # when: an import leaves stock still below the threshold
    import_lines(product, ["K1", "K2"])
    # then: still alerted
    assert Product.objects.get(pk=product.pk).low_stock_alerted is True
    # when: stock reaches the threshold
    import_lines(product, ["K3"])
    # then: the next episode will alert again
    assert Product.objects.get(pk=product.pk).low_stock_alerted is False


def test_no_plaintext_anywhere_in_the_database(make_product):
    # given
    product = make_product()
    secrets = ["PLAIN-SECRET-7781-QQ", "明文密钥-不应出现-5521", "🔑EMOJI-SECRET🔑"]
    # when
    import_lines(product, secrets)
    # then: no table, read raw, holds the plaintext bytes
    dump = _raw_database_bytes()
    for key in Key.objects.all():  # sanity: the dump does include the key rows
        assert key.fingerprint.encode() in dump and bytes(key.ciphertext) in dump
    for secret in secrets:
        assert secret.encode("utf-8") not in dump
        assert secret.encode("utf-16-le") not in dump


def _raw_database_bytes() -> bytes:
    chunks = []
    with connection.cursor() as cursor:
        for table in connection.introspection.table_names(cursor):
            cursor.execute(f"SELECT * FROM {connection.ops.quote_name(table)}")
            for row in cursor.fetchall():
                for value in row:
                    if isinstance(value, (bytes, bytearray, memoryview)):
                        chunks.append(bytes(value))
                    elif value is not None:
                        chunks.append(str(value).encode("utf-8"))
    return b"\x00".join(chunks)


@pytest.mark.concurrency
def test_two_concurrent_imports_of_one_file_store_each_key_once(make_product, server_db):
    # given
    product = make_product()
    lines = [f"RACE-{i:05d}" for i in range(3000)]
    reports, errors = [], []

    def run():
        try:
            reports.append(import_lines(product, lines, batch_size=500))
        except Exception as exc:  # noqa: BLE001 - surfaced by the assertion below
            errors.append(exc)
        finally:
            connection.close()

    # when
    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # then
    assert errors == []
    assert Key.objects.filter(product=product).count() == 3000
    assert sum(r.imported for r in reports) == 3000
    assert sum(r.duplicate_stored for r in reports) == 3000


class _BrokenStream(io.BytesIO):
    """A file whose disk fails after `good` bytes."""

    def __init__(self, data: bytes, good: int):
        super().__init__(data)
        self.good = good

    def readline(self, limit=-1):
        if self.tell() >= self.good:
            raise OSError("read error on the disk")
        return super().readline(limit)


def test_a_read_error_surfaces_and_keeps_what_was_written(make_product):
    # given: a file that fails to read past its first 30 lines, chunks of 10
    product = make_product()
    data = b"".join(b"RD-%03d\n" % i for i in range(100))
    # when / then: the error reaches the caller (raised in the reading thread)
    with pytest.raises(OSError, match="read error on the disk"):
        keys_import(product=product, stream=_BrokenStream(data, good=7 * 30), source="t", batch_size=10)
    # and the chunks written before it stay, nothing after
    assert stored_keys(product) == [f"RD-{i:03d}" for i in range(30)]
    assert not [t for t in threading.enumerate() if t.name == "kami-import-read"]


def test_a_writer_error_stops_the_reading_thread(make_product):
    # given: progress that fails after the first chunk (a lost lease, a stopped worker)
    product = make_product()

    def progress(report):
        raise RuntimeError("lease lost")

    # when / then
    with pytest.raises(RuntimeError, match="lease lost"):
        import_lines(product, [f"WR-{i}" for i in range(1000)], batch_size=10, on_progress=progress)
    assert Key.objects.filter(product=product).count() == 10
    assert not [t for t in threading.enumerate() if t.name == "kami-import-read"]
