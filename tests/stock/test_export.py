"""keys_export: what was imported comes back exactly (txt byte for byte; csv through a CSV
reader, spreadsheet-safe), chunk by chunk, read ahead by a thread or in the caller's
transaction; the bulk opener refuses what key_open refuses."""
from __future__ import annotations

import csv
import io
import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kami.core.crypto import KeyringError, keyring
from kami.fulfilment.backfill import restock_backfill
from kami.stock import export
from kami.stock.models import Key
from kami.stock.services import keys_export, keys_export_chunks, keys_generate
from kami.stock.vault import OPEN_COLUMNS, SHARED_AAD, KeyMisplaced, key_fingerprint, keys_open_many
from tests.memory import RssWatch
from tests.stock.helpers import awaiting_order, import_lines

# Keys a distributor's file may hold: Unicode, emoji, CSV's own special characters, a tab inside,
# the longest key accepted, and every character a spreadsheet starts a formula with.
SPECIAL = [
    "AAAA-1111", "中文卡密-二", "🎉 emoji 3", "Ünïcödé-ß", "account\tpassword", 'comma,and "quotes"',
    "'already quoted", "=1+1", "+A", "-B", "@SUM(A1)", "=HYPERLINK(\"http://x\",\"y\")", "x" * 1024,
    "semi;colon", "back\\slash",
]


def _unescape(cell: str) -> str:
    """What a merchant does to get a key back from the CSV: drop the quote Kami put in front."""
    return cell[1:] if cell[:1] == "'" and cell[1:2] in ("=", "+", "-", "@", "\t", "\r") else cell


def _export(product, **options) -> tuple[str, int]:
    out = io.StringIO()
    written = keys_export(product=product, out=out, actor="test", **options)
    return out.getvalue(), written


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("chunk_size", [1, 4, 10_000])
def test_export_gives_back_exactly_what_was_imported(make_product, chunk_size):
    # given
    product = make_product()
    report = import_lines(product, SPECIAL)
    assert report.imported == len(SPECIAL)
    # when
    txt, written = _export(product, fmt="txt", chunk_size=chunk_size)
    text, _ = _export(product, fmt="csv", chunk_size=chunk_size)
    # then: txt byte for byte, in import order; csv the same keys once unescaped
    assert written == len(SPECIAL)
    assert txt == "".join(f"{key}\n" for key in SPECIAL)
    rows = list(csv.reader(io.StringIO(text, newline="")))
    assert text.count("\r\n") == len(rows) == len(SPECIAL) + 1  # RFC 4180 line ends
    assert rows[0] == ["key", "status", "order_no", "sold_at"]
    assert [_unescape(row[0]) for row in rows[1:]] == SPECIAL
    assert all(row[1:] == ["available", "", ""] for row in rows[1:])


@pytest.mark.django_db
def test_export_inside_a_transaction_reads_its_own_rows(make_product):
    # given: keys imported in this test's transaction, which another connection cannot see
    product = make_product()
    import_lines(product, SPECIAL)
    # when
    txt, written = _export(product, fmt="txt", chunk_size=4)
    # then
    assert (txt, written) == ("".join(f"{key}\n" for key in SPECIAL), len(SPECIAL))


@pytest.mark.django_db(transaction=True)
def test_a_download_cut_short_stops_the_reading_thread(make_product):
    # given: an export of three chunks, its first chunk read (a browser that then goes away)
    product = make_product()
    import_lines(product, SPECIAL[:9])
    threads = threading.active_count()
    chunks = keys_export_chunks(product=product, actor="test", chunk_size=3)
    first, _ = next(chunks)
    assert threading.active_count() == threads + 1  # the reader, one chunk ahead
    # when: the server closes the response
    chunks.close()
    # then: the reader is gone, and the first chunk was exactly the first three keys
    assert threading.active_count() == threads
    assert first == "".join(f"{key}\n" for key in SPECIAL[:3])


@pytest.mark.sqlite_only  # text in, text out: no database
@pytest.mark.parametrize("first", ["=", "+", "-", "@", "\t", "\r"])
def test_a_cell_starting_a_formula_gets_a_quote_and_nothing_else_changes(first):
    assert export.csv_cells([f"{first}cmd|' /C calc'!A0", f"A{first}B", ""]) == [
        f"'{first}cmd|' /C calc'!A0", f"A{first}B", ""]


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("key", ["=cmd|' /C calc'!A0", "+41-1", "-2+3", "@SUM(1+1)*cmd"])
def test_csv_export_escapes_a_formula_key_and_txt_keeps_it_exact(make_product, key):
    # given
    product = make_product()
    import_lines(product, [key, "PLAIN"])
    # when
    txt, _ = _export(product, fmt="txt")
    text, _ = _export(product, fmt="csv")
    # then
    assert txt == f"{key}\nPLAIN\n"
    assert [row[0] for row in csv.reader(io.StringIO(text))][1:] == [f"'{key}", "PLAIN"]


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("first", ["=", "+", "-", "@", "\t", "\r"])
def test_csv_export_escapes_an_order_number_starting_a_formula(make_product, first):
    # given: a sold key whose order number starts with the character (order numbers are Kami's
    # own today; the cell is escaped all the same)
    product = make_product()
    import_lines(product, ["SOLD-1"])
    order = awaiting_order(product, quantity=1, order_no=f"{first}HYPERLINK(1)")
    assert restock_backfill(product_id=product.pk) == 1
    # when
    text, _ = _export(product, status="sold", fmt="csv")
    # then
    row = list(csv.reader(io.StringIO(text)))[1]
    assert row[:3] == ["SOLD-1", "sold", f"'{order.order_no}"]


@pytest.mark.django_db(transaction=True)
def test_csv_gives_a_sold_keys_sale_time_as_the_model_reads_it(make_product):
    # given: a sold key between two unsold ones (the export reads sold_at unconverted and
    # converts only the rows that have one)
    product = make_product()
    import_lines(product, ["FIRST", "SOLD-1", "LAST"])
    awaiting_order(product, quantity=1)
    assert restock_backfill(product_id=product.pk) == 1
    sold = Key.objects.get(product=product, status=Key.Status.SOLD)
    # when
    text, _ = _export(product, status="all", fmt="csv", chunk_size=2)
    # then: the aware time's ISO form, as Django's own converters give it, and empty for the others
    assert [row[3] for row in csv.reader(io.StringIO(text))][1:] == [
        sold.sold_at.isoformat() if key.pk == sold.pk else ""
        for key in Key.objects.filter(product=product).order_by("id")]
    assert sold.sold_at.utcoffset() is not None


@pytest.mark.django_db(transaction=True)
def test_csv_lists_each_order_of_a_reusable_key_across_chunks(make_product):
    # given: a reusable key sold twice, between two unsold keys, one key per chunk
    product = make_product(kind="reusable")
    import_lines(product, ["SHARED"])
    for order_no in ("ORDER-A", "ORDER-B"):
        awaiting_order(product, quantity=1, order_no=order_no)
        assert restock_backfill(product_id=product.pk) == 1
    # when
    text, written = _export(product, status="all", fmt="csv", chunk_size=1)
    # then
    assert written == 1
    assert [row[:3] for row in csv.reader(io.StringIO(text))][1:] == [
        ["SHARED", "available", "ORDER-A"], ["SHARED", "available", "ORDER-B"]]


_cell = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=12)


@pytest.mark.sqlite_only  # rows in, text out: no database
@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(_cell, st.sampled_from(["available", "sold"]), _cell), min_size=1, max_size=8))
def test_the_hand_joined_csv_is_the_csv_modules_text(table):
    # given: rows as the export holds them (id, fingerprint, key id, ciphertext, seal, status, sold_at)
    rows = [(i, "f" * 64, "k", b"", 2, status, None) for i, (_, status, _) in enumerate(table, start=1)]
    plain = [key for key, _, _ in table]
    orders = {i: export.csv_cells([no]) for i, (_, _, no) in enumerate(table, start=1) if no}
    # when
    text = export._csv_rows(rows, plain, orders)
    # then: the same text the csv module writes for the same cells
    reference = [(cell, status, number, "") for (_, status, _), cell, row in zip(table, export.csv_cells(plain), rows)
                 for number in orders.get(row[0], ("",))]
    assert text == export.csv_text(reference)


@pytest.mark.django_db
def test_bulk_open_names_a_key_whose_ciphertext_was_moved(make_product):
    # given: two keys, the second's ciphertext copied onto the first
    product = make_product()
    import_lines(product, ["FIRST", "SECOND"])
    first, second = Key.objects.filter(product=product).order_by("id")
    Key.objects.filter(pk=first.pk).update(ciphertext=second.ciphertext)
    rows = list(Key.objects.filter(product=product).order_by("id").values_list(*OPEN_COLUMNS))
    # when / then
    with pytest.raises(KeyMisplaced, match=f"key #{first.pk} \\({first.fingerprint[:8]}\\)"):
        keys_open_many(rows, product_id=product.pk)
    with pytest.raises(KeyMisplaced):  # and through the export
        _export(product)


@pytest.mark.django_db
def test_bulk_open_of_a_key_under_a_lost_data_key_says_restore_it(make_product):
    product = make_product()
    import_lines(product, ["K-1", "K-2"])
    Key.objects.filter(product=product).update(key_id="kgone")
    rows = list(Key.objects.filter(product=product).order_by("id").values_list(*OPEN_COLUMNS))
    with pytest.raises(KeyringError, match="data key 'kgone' is not in the keyring; restore it from your backup"):
        keys_open_many(rows, product_id=product.pk)


@pytest.mark.django_db
def test_bulk_open_reads_old_shared_rows_beside_bound_ones(make_product):
    # given: one row in the old format (one AAD for every key) among bound ones
    product = make_product()
    import_lines(product, ["NEW-1"])
    key_id, blob = keyring().encrypt("OLD-2", aad=SHARED_AAD)
    Key.objects.create(product=product, key_id=key_id, ciphertext=blob, fingerprint=key_fingerprint("OLD-2"),
                       seal=Key.Seal.SHARED)
    rows = list(Key.objects.filter(product=product).order_by("id").values_list(*OPEN_COLUMNS))
    # then
    assert keys_open_many(rows, product_id=product.pk) == ["NEW-1", "OLD-2"]


class _Sink:
    """Counts what is written and keeps nothing, like a file or a socket would."""

    def __init__(self):
        self.chars = self.lines = 0

    def write(self, text: str) -> int:
        self.chars += len(text)
        self.lines += text.count("\n")
        return len(text)


LARGE = 120_000
# Holding the rows would take about 48 MB (a tuple of seven values with a 64-character
# fingerprint and a ciphertext per key, ~400 bytes); the export holds at most three chunks of
# 10,000 keys, ~5 MB each with the driver's buffers, whatever the count (measured: 1-6 MiB of
# growth here with 200,000 keys, up to 22 MiB in bench/export_vs_copy.py's first run over a
# million keys).
EXPORT_RSS_BOUND = 32 * 1024 * 1024


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_large_export_keeps_memory_flat(make_product, keys_truncated):
    # given: 120,000 generated keys
    product = make_product()
    assert keys_generate(product=product, count=LARGE).imported == LARGE
    for fmt in ("txt", "csv"):
        sink = _Sink()
        # when
        watch = RssWatch()
        watch.start()
        try:
            written = keys_export(product=product, fmt=fmt, out=sink, actor="test")
        finally:
            watch.done.set()
            watch.join()
        # then
        print(f"\n{LARGE:,}-key {fmt} export: RSS growth {watch.growth / 2**20:.1f} MiB")
        assert written == LARGE and sink.lines == LARGE + (fmt == "csv")
        row = "XXXX-XXXX-XXXX-XXXX\n" if fmt == "txt" else "XXXX-XXXX-XXXX-XXXX,available,,\r\n"
        header = "" if fmt == "txt" else "key,status,order_no,sold_at\r\n"
        assert sink.chars == len(header) + LARGE * len(row)
        assert watch.growth < EXPORT_RSS_BOUND, f"RSS grew {watch.growth / 2**20:.1f} MiB: the export is not streaming"
