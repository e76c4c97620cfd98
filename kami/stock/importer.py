"""Importing keys from a file, streamed so memory stays flat however large the file.

Field lesson: imports that choke on large files (dujiaoka #100, card-system #142). So nothing
here holds the whole file or a set of every fingerprint: lines are read one at a time (a line
too long is skipped without being read into memory), sealed at once, and written in batches.
Each batch dedupes itself with a set, then asks the database which of its fingerprints the
product already has; a hit on a key of *this* import is a duplicate inside the file.

The lines come from a reader: `read_lines` (one key per line) or `kami.stock.csvsource` (one
column of a CSV file); both feed the one loop below, `keys_import_into`.
"""
from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import BinaryIO, NamedTuple

from django.db import IntegrityError, OperationalError, connection, transaction

from kami.audit.services import audit_record
from kami.catalog.models import Product
from kami.core import clock
from kami.core.crypto import normalise_key
from kami.core.errors import Conflict
from kami.stock.claim import available_count
from kami.stock.models import ImportBatch, Key
from kami.stock.report import ImportReport
from kami.stock.vault import key_seal

MAX_CHARS = 1024
# The longest acceptable line in bytes: 1,024 four-byte characters plus a line ending and some
# padding. A line longer than this is surely too long and is skipped unread.
_READ_LIMIT = MAX_CHARS * 4 + 64
_BOM = b"\xef\xbb\xbf"
# Control characters other than tab (a key may be "account<TAB>password"): a CR left inside a
# line (old Mac line endings), form feeds, DEL, C1 controls all mean a damaged file.
_CONTROL = re.compile(r"[\x01-\x08\x0a-\x1f\x7f-\x9f]")

Progress = Callable[[ImportReport], None]
# (line number, raw key bytes | None: line too long | str: a problem the reader found)
Row = tuple[int, "bytes | None | str"]
Reader = Callable[[BinaryIO, ImportReport], Iterator[Row]]


class Sealed(NamedTuple):
    """A key ready to store: its plaintext is already gone."""

    line: int
    key_id: str
    ciphertext: bytes
    fingerprint: str


def keys_import(*, product: Product, stream: BinaryIO, source: str, actor: str = "cli", ip: str = "",
                batch_size: int = 2000, on_progress: Progress | None = None) -> ImportReport:
    """Import one key per line from a binary stream (a file or stdin) into `product`.

    Blank lines are skipped; invalid lines (bad UTF-8, NUL, control characters, over 1,024
    characters) and duplicates are reported by line number and skipped. Keys committed before a
    crash stay; running the same file again reports them as already stored and adds the rest.
    """
    batch, report = batch_start(product=product, source=source, actor=actor)
    keys_import_into(batch=batch, report=report, stream=stream, batch_size=batch_size, on_progress=on_progress)
    batch_finish(batch=batch, report=report, action="keys.import", ip=ip)
    return report


def keys_import_into(*, batch: ImportBatch, report: ImportReport, stream: BinaryIO, reader: Reader | None = None,
                     batch_size: int = 2000, on_progress: Progress | None = None) -> None:
    """The import loop: read, check, seal, write a chunk at a time. A chunk is written (and
    `on_progress` called) every `batch_size` keys or `batch_size` lines, whichever comes first,
    so progress moves even through a run of invalid lines. Continues `report` where it stands
    (a resumed import passes the counts and line number of its last checkpoint)."""
    chunk: list[Sealed] = []
    flushed_at = report.lines
    for line, raw in (reader or read_lines)(stream, report):
        sealed = _seal_line(line, raw, report, product_id=batch.product_id)
        if sealed is not None:
            chunk.append(sealed)
        if len(chunk) >= batch_size or line - flushed_at >= batch_size:
            write_chunk(batch=batch, chunk=chunk, report=report)
            chunk, flushed_at = [], line
            if on_progress:
                on_progress(report)
    write_chunk(batch=batch, chunk=chunk, report=report)
    if on_progress:
        on_progress(report)


def read_lines(stream: BinaryIO, report: ImportReport, limit: int = _READ_LIMIT) -> Iterator[tuple[int, bytes | None]]:
    """(line number, raw line) one at a time; raw is None for a line of `limit` bytes or more,
    skipped unread. Numbers continue from `report.lines` (0 for a fresh import)."""
    number = report.lines
    while True:
        raw = stream.readline(limit)
        if not raw:
            return
        number += 1
        report.lines = number
        report.bytes_read += len(raw)
        if number == 1 and raw.startswith(_BOM):
            raw = raw[len(_BOM):]  # Windows editors mark UTF-8 files this way
        if len(raw) == limit and not raw.endswith(b"\n"):
            while raw and not raw.endswith(b"\n"):  # drain the rest of the line without keeping it
                raw = stream.readline(limit)
                report.bytes_read += len(raw)
            raw = None
        yield number, raw


def _seal_line(line: int, raw: bytes | None | str, report: ImportReport, *, product_id: int) -> Sealed | None:
    """Check one line; seal it for `product_id` when it holds a key, else count it as blank or invalid."""
    problem, text = (raw, "") if isinstance(raw, str) else line_check(raw)
    if problem:
        report.note_invalid(line, problem)
        return None
    if not text:
        report.blank += 1
        return None
    key_id, blob, fingerprint = key_seal(text, product_id=product_id)
    return Sealed(line, key_id, blob, fingerprint)


def line_check(raw: bytes | None) -> tuple[str, str]:
    """(problem, normalised key): exactly one of them is empty, or both for a blank line."""
    if raw is None:
        return f"line longer than {MAX_CHARS} characters", ""
    if b"\x00" in raw:
        return "contains a NUL byte", ""
    try:
        text = normalise_key(raw.decode("utf-8"))
    except UnicodeDecodeError:
        return "not valid UTF-8 (save the file as UTF-8)", ""
    if len(text) > MAX_CHARS:
        return f"line longer than {MAX_CHARS} characters", ""
    bad = _CONTROL.search(text)
    if bad:
        return f"contains control character U+{ord(bad.group()):04X}", ""
    return "", text


def batch_start(*, product: Product, source: str, actor: str) -> tuple[ImportBatch, ImportReport]:
    batch = ImportBatch.objects.create(product=product, source=source[:255], actor=actor[:150])
    return batch, ImportReport(batch_id=batch.pk)


def write_chunk(*, batch: ImportBatch, chunk: list[Sealed], report: ImportReport, attempts: int = 3) -> int:
    """Store the chunk's new keys; report its duplicates. Returns how many keys were stored.

    A concurrent import of the same key can win between our look-up and our insert; the unique
    constraint then refuses the whole chunk, and we look again (the winner has committed).
    Call it outside any transaction: each chunk commits on its own.
    """
    fresh: dict[str, Sealed] = {}
    for item in chunk:
        if item.fingerprint in fresh:
            report.note_duplicate(item.line, in_file=True, same_as=f"line {fresh[item.fingerprint].line}")
        else:
            fresh[item.fingerprint] = item
    if not fresh:
        return 0
    for attempt in range(1, attempts + 1):
        try:
            existing, stored = _insert_new(batch, fresh, report)
        except (IntegrityError, OperationalError) as exc:
            # Lost a race on the unique constraint, or a deadlock/lock timeout against a
            # concurrent import of the same keys (MariaDB): the chunk rolled back whole; look again.
            if attempt == attempts and not isinstance(exc, IntegrityError):
                raise
            continue
        carried = 0
        for fingerprint, item in fresh.items():  # in line order
            if fingerprint not in existing:
                continue
            key_pk, batch_id = existing[fingerprint]
            if fingerprint in report.carried:  # stored by this import's interrupted earlier run
                report.carried.discard(fingerprint)
                carried += 1
            else:
                report.note_duplicate(item.line, in_file=batch_id == batch.pk, same_as=f"key #{key_pk}")
        if stored and not report.imported:
            _refresh_statistics()
        report.imported += stored + carried
        return stored
    raise Conflict("another import of the same keys keeps colliding with this one; run the import again")


def _insert_new(batch: ImportBatch, fresh: dict[str, Sealed],
                report: ImportReport) -> tuple[dict[str, tuple[int, int | None]], int]:
    """({fingerprint: (key id, batch id)} of keys already stored, number inserted). The batch row's counts
    move with each chunk, so an import cut short still says what it did."""
    with transaction.atomic():  # one short transaction per chunk: look up, insert, count
        existing = _stored(batch.product_id, list(fresh))
        new = [s for fp, s in fresh.items() if fp not in existing]
        _insert_keys(batch, new)
        ImportBatch.objects.filter(pk=batch.pk).update(
            imported=report.imported + len(new), duplicates=report.duplicates + len(existing), invalid=report.invalid)
    return existing, len(new)


def _refresh_statistics() -> None:
    """After an import's first chunk, let PostgreSQL see the product's keys. With statistics
    gathered before the product had keys, the planner takes `product_id = X` for one row and
    may probe fingerprints through key_claim, scanning the product's every key per lookup (a
    1M-key import went from about a minute to over ten). ANALYZE samples: tens of ms."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(f"ANALYZE {connection.ops.quote_name(Key._meta.db_table)}")


def _stored(product_id: int, fingerprints: list[str]) -> dict[str, tuple[int, int | None]]:
    """{fingerprint: (key id, batch id)} of the product's keys among `fingerprints`.

    On PostgreSQL the plain `fingerprint IN (…)` query trusts the statistics about the product,
    and those are stale exactly when it matters (a new product's first big import): it then
    scanned every key of the product for each chunk, 60% of a million-key import. One probe of
    the unique index per fingerprint (LIMIT 1 keeps the planner from flattening it) is immune.
    """
    if connection.vendor != "postgresql":
        keys = Key.objects.filter(product_id=product_id, fingerprint__in=fingerprints)
        return {fp: (pk, batch_id) for fp, pk, batch_id in keys.values_list("fingerprint", "id", "batch_id")}
    meta, quote = Key._meta, connection.ops.quote_name
    column = {name: quote(meta.get_field(name).column) for name in ("product", "fingerprint", "batch")}
    sql = (f"SELECT f.fp, k.id, k.b FROM unnest(%s::text[]) AS f(fp) CROSS JOIN LATERAL "
           f"(SELECT {quote('id')} AS id, {column['batch']} AS b FROM {quote(meta.db_table)} "
           f"WHERE {column['product']} = %s AND {column['fingerprint']} = f.fp LIMIT 1) AS k")
    with connection.cursor() as cursor:
        cursor.execute(sql, [fingerprints, product_id])
        return {fp: (pk, batch_id) for fp, pk, batch_id in cursor.fetchall()}


_COLUMNS = ("product", "batch", "key_id", "ciphertext", "fingerprint", "status", "created_at", "void_reason",
            "reusable", "seal")


def _insert_keys(batch: ImportBatch, sealed: list[Sealed]) -> None:
    """Insert keys without the ORM's per-field work: bulk_create spent 70% of a large import
    preparing values one field at a time (in 111-row statements on SQLite). PostgreSQL takes the
    rows by COPY (executemany there costs a round trip per row); the others by executemany,
    which PyMySQL folds into multi-row INSERTs. Values pass through each field's
    get_db_prep_save, so every engine receives what the ORM would send. Each key records what
    it is imported as (`reusable`, from the product's kind now) and its sealing format."""
    if not sealed:
        return
    meta, quote = Key._meta, connection.ops.quote_name
    fields = [meta.get_field(name) for name in _COLUMNS]
    columns = f"{quote(meta.db_table)} ({', '.join(quote(f.column) for f in fields)})"
    product, batch_id, _, binary, _, status, created, void, reusable, seal = (f.get_db_prep_save for f in fields)
    fixed = (product(batch.product_id, connection), batch_id(batch.pk, connection))
    tail = (status(Key.Status.AVAILABLE.value, connection), created(clock.now(), connection), void("", connection),
            reusable(batch.product.kind == Product.Kind.REUSABLE, connection), seal(Key.Seal.BOUND.value, connection))
    rows = ((*fixed, s.key_id, binary(s.ciphertext, connection), s.fingerprint, *tail) for s in sealed)
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            # The driver's own cursor, so Django's error mapping (IntegrityError…) is put back by hand.
            with connection.wrap_database_errors, cursor.cursor.copy(f"COPY {columns} FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
        else:
            cursor.executemany(f"INSERT INTO {columns} VALUES ({', '.join(['%s'] * len(fields))})", list(rows))


def batch_finish(*, batch: ImportBatch, report: ImportReport, action: str, ip: str = "", **detail) -> None:
    """Close the batch row, write the audit row, and re-arm the low-stock alert."""
    ImportBatch.objects.filter(pk=batch.pk).update(
        finished_at=clock.now(), invalid=report.invalid, imported=report.imported, duplicates=report.duplicates)
    audit_record(actor=batch.actor, action=action, obj_type="product", obj_id=batch.product.slug, ip=ip,
                 batch=batch.pk, source=batch.source, imported=report.imported, duplicates=report.duplicates,
                 invalid=report.invalid, blank=report.blank, **detail)
    low_stock_rearm(product=batch.product)


def low_stock_rearm(*, product: Product) -> bool:
    """Once stock is back at the threshold, clear the 'alerted' flag so the next low-stock
    episode alerts again (field lesson: low-stock alerts that never fire)."""
    if not product.low_stock:
        return False
    if available_count(product_id=product.pk, at_most=product.low_stock) < product.low_stock:
        return False
    return bool(Product.objects.filter(pk=product.pk, low_stock_alerted=True).update(low_stock_alerted=False))
