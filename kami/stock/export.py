"""Exporting keys in plaintext, streamed: a million keys in flat memory, about as fast as the
database can hand over the rows (docs/performance.md, "Export and generation").

    keys_export_chunks(product, status, fmt, actor) -> (text, keys in it), a chunk at a time
    keys_export(…, out)                                -> the same, written to a file

The path, one chunk of `EXPORT_CHUNK` keys at a time:
- read: keyset paging in id order (`id > last ORDER BY id LIMIT n`: an index range scan on
  every engine; no long-open cursor or transaction, whatever the pace of the reader), in a
  thread of its own one chunk ahead (`_read_ahead`), so the database works on the next chunk
  while this thread decrypts and formats the last one; rows as the driver gives them (`_rows`:
  no converter called per row);
- decrypt: `keys_open_many` (kami.stock.vault), one AES-GCM object for the chunk;
- format: txt is byte-exact, one key and a newline (LF); csv is key,status,order_no,sold_at,
  rows ending with CRLF (RFC 4180), its cells made safe for spreadsheets (`csv_cells`, OWASP
  "CSV injection").

Audited before the first key leaves (invariant 5), so an export cut short is on record.
"""
from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator
from typing import TextIO

from django.db import connection

from kami.audit.services import audit_record
from kami.catalog.models import Product
from kami.core.errors import BadInput
from kami.stock.importer import ahead
from kami.stock.models import Key
from kami.stock.vault import OPEN_COLUMNS, keys_open_many

EXPORT_STATUSES = ("available", "sold", "void", "all")
EXPORT_FORMATS = ("txt", "csv")
CSV_HEADER = ("key", "status", "order_no", "sold_at")
# Keys per chunk: fewer round trips against a few MB held (at most three chunks: being read,
# queued, being written). Measured in docs/performance.md.
EXPORT_CHUNK = 10_000
_ORDER_NO = "order_keys__order__order_no"  # via OrderKey's related name: stock never imports orders
_FIELDS = (*OPEN_COLUMNS, "status", "sold_at")
_STATUS, _SOLD_AT = len(OPEN_COLUMNS), len(OPEN_COLUMNS) + 1
# What a spreadsheet takes for the start of a formula (OWASP, CSV injection).
_FORMULA_STARTS = frozenset("=+-@\t\r")
# What makes the csv module quote a cell (its default dialect, lineterminator CRLF).
_QUOTED = re.compile(r'[,"\r\n]')

Chunk = tuple[list[tuple], dict[int, list[str]]]  # rows, {key id: order numbers} (csv only)


def keys_export(*, product: Product, status: str = "available", fmt: str = "txt", out: TextIO, actor: str,
                ip: str = "", chunk_size: int = EXPORT_CHUNK) -> int:
    """Write the product's keys in plaintext to `out`; return how many keys were written."""
    written = 0
    for text, keys in keys_export_chunks(product=product, status=status, fmt=fmt, actor=actor, ip=ip,
                                         chunk_size=chunk_size):
        out.write(text)
        written += keys
    return written


def keys_export_chunks(*, product: Product, status: str = "available", fmt: str = "txt", actor: str, ip: str = "",
                       chunk_size: int = EXPORT_CHUNK) -> Iterator[tuple[str, int]]:
    """The export as (text, number of keys in it) a chunk at a time, for a file or a download.

    Checked and audited now, before the first key leaves. A key sold while the export runs may
    show either status."""
    if status not in EXPORT_STATUSES:
        raise BadInput(f"--status must be one of {', '.join(EXPORT_STATUSES)}")
    if fmt not in EXPORT_FORMATS:
        raise BadInput(f"--format must be one of {', '.join(EXPORT_FORMATS)}")
    keys = Key.objects.filter(product_id=product.pk)
    if status != "all":
        keys = keys.filter(status=status)
    audit_record(actor=actor, action="keys.export", obj_type="product", obj_id=product.slug, ip=ip,
                 status=status, format=fmt, count=keys.count())
    return _export_text(keys, product_id=product.pk, fmt=fmt, chunk_size=chunk_size)


def _export_text(keys, *, product_id: int, fmt: str, chunk_size: int) -> Iterator[tuple[str, int]]:
    if fmt == "csv":
        yield ",".join(CSV_HEADER) + "\r\n", 0
    for rows, orders in _read_ahead(keys, size=chunk_size, orders=fmt == "csv"):
        plain = keys_open_many(rows, product_id=product_id)
        if fmt == "txt":
            yield "\n".join(plain) + "\n", len(rows)
        else:
            yield _csv_rows(rows, plain, orders), len(rows)


def _csv_rows(rows: list[tuple], plain: list[str], orders: dict[int, list[str]]) -> str:
    """key,status,order_no,sold_at for a chunk; a key that went to several orders (a reusable
    one) gets a row per order. A chunk none of whose cells needs quoting (no `,` `"` or line
    break: nearly always) is joined by hand, a quarter of the csv module's cost, and a chunk of
    unsold keys with one status by one `str.join`; any other goes through the csv module.
    tests/stock/test_export.py checks they all give the csv module's text."""
    none, cells = ("",), csv_cells(plain)
    if _QUOTED.search("\x00".join(cells)) or any(_QUOTED.search(n) for ns in orders.values() for n in ns):
        return csv_text([(cell, row[_STATUS], number, row[_SOLD_AT].isoformat() if row[_SOLD_AT] else "")
                         for row, cell in zip(rows, cells) for number in orders.get(row[0], none)])
    if not orders and len({row[_STATUS] for row in rows}) == 1 and all(row[_SOLD_AT] is None for row in rows):
        tail = f",{rows[0][_STATUS]},,\r\n"  # a chunk of unsold keys (an export of available keys)
        return tail.join(cells) + tail
    return "".join([f"{cell},{row[_STATUS]},{number},{row[_SOLD_AT].isoformat() if row[_SOLD_AT] else ''}\r\n"
                    for row, cell in zip(rows, cells) for number in orders.get(row[0], none)])


def csv_text(table: list[tuple]) -> str:
    """The csv module's text for `table` (the reference the hand-joined path is checked against).
    Rows end with CRLF, as RFC 4180 has it: with a bare LF the csv module leaves a CR inside a
    cell unquoted, and a spreadsheet breaks the row there."""
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\r\n").writerows(table)
    return buffer.getvalue()


def csv_cells(texts: list[str]) -> list[str]:
    """Cells a spreadsheet shows as text. One that starts with `=`, `+`, `-`, `@`, a tab or a
    carriage return would be run as a formula (OWASP "CSV injection"), so it gets a leading `'`,
    as OWASP recommends; the spreadsheet then shows the text. Every other cell, and the whole
    txt export, is exactly the stored text. Applied to every cell that holds text from outside
    (the key, the order number); status and sale time are Kami's own."""
    return [f"'{text}" if text[:1] in _FORMULA_STARTS else text for text in texts]


def _read_ahead(keys, *, size: int, orders: bool) -> Iterator[Chunk]:
    """`_chunks`, read by a thread of its own (with its own connection) one chunk ahead. Inside
    a transaction (a caller's, a test's) another connection would not see its rows: then the
    chunks are read here, one after the other."""
    if connection.in_atomic_block:
        return _chunks(keys, size=size, orders=orders)
    return ahead(_chunks_then_close(keys, size=size, orders=orders))


def _chunks_then_close(keys, *, size: int, orders: bool) -> Iterator[Chunk]:
    try:
        yield from _chunks(keys, size=size, orders=orders)
    finally:
        connection.close()  # the reading thread's own connection (Django's are per thread)


def _chunks(keys, *, size: int, orders: bool) -> Iterator[Chunk]:
    """The rows of `keys` in id order, `size` at a time, as plain tuples: `OPEN_COLUMNS` (what
    keys_open_many reads), then status and sold_at; with the chunk's order numbers if asked."""
    last = 0
    while True:
        rows = _rows(keys.filter(id__gt=last).order_by("id").values_list(*_FIELDS)[:size])
        if not rows:
            return
        if any(row[_SOLD_AT] is not None for row in rows):
            rows = _sale_times(rows)
        yield rows, _order_numbers(keys, first=rows[0][0], last=rows[-1][0]) if orders else {}
        last = rows[-1][0]


def _rows(page) -> list[tuple]:
    """The rows of the query `page`, as the driver gives them. Not through the queryset: it
    runs Django's converters on every row of a chunk (a Python call per row, for sold_at alone:
    ~0.8 s of CPU per million keys on SQLite, over half the read itself) and fetches 100 rows
    a call; `_sale_times` converts the few sold_at that are not empty."""
    sql, params = page.query.sql_with_params()
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return list(cursor.fetchall())  # a tuple of rows from some drivers


def _sale_times(rows: list[tuple]) -> list[tuple]:
    """`rows` with the driver's sold_at made what the model field gives (an aware datetime),
    by the converters Django would have run, on the rows that have one."""
    column = Key._meta.get_field("sold_at").get_col(Key._meta.db_table)
    converters = connection.ops.get_db_converters(column) + column.get_db_converters(connection)

    def convert(value):
        for converter in converters:
            value = converter(value, column, connection)
        return value

    return [row if row[_SOLD_AT] is None else (*row[:_SOLD_AT], convert(row[_SOLD_AT])) for row in rows]


def _order_numbers(keys, *, first: int, last: int) -> dict[int, list[str]]:
    """{key id: its order numbers, as csv cells} for the keys with ids first..last: the chunk's
    range, not a list of its ids (an IN list of ten thousand ids cost more to send and parse
    than the rows)."""
    found: dict[int, list[str]] = {}
    for pk, order_no in (keys.filter(id__gte=first, id__lte=last, order_keys__isnull=False)
                         .order_by("id", "order_keys__id").values_list("id", _ORDER_NO)):
        found.setdefault(pk, []).append(order_no)
    return {pk: csv_cells(numbers) for pk, numbers in found.items()}
