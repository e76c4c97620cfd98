"""Importing keys from a file, streamed so memory stays flat however large the file.

Field lesson: imports that choke on large files (dujiaoka #100, card-system #142). So nothing
here holds the whole file or a set of every fingerprint: lines are read one at a time (a line
too long is skipped without being read into memory), checked, sealed a chunk at a time
(`keys_seal_bulk`) and written a chunk at a time (`write_chunk`, SQL per engine in
kami.stock.bulk). Each chunk dedupes itself with a dict; the database says which of its keys
the product already has; a hit on a key of *this* import is a duplicate inside the file.

Reading and sealing run in a thread one chunk ahead of the writing (`ahead`): the Python CPU of
one chunk overlaps the database's work on the one before. docs/performance.md ("Import") has
the figures and the reasons.

The lines come from a reader: `read_lines` (one key per line) or `kami.stock.csvsource` (one
column of a CSV file); both feed the one loop below, `keys_import_into`, which the CLI, the API
and the back office's background job (kami.stock.jobs) all run.
"""
from __future__ import annotations

import queue
import re
import threading
import unicodedata
from collections.abc import Callable, Iterator
from contextlib import closing
from typing import BinaryIO, NamedTuple, TypeVar

from django.db import IntegrityError, OperationalError, connection

from kami.audit.services import audit_record
from kami.catalog.models import Product
from kami.core import clock
from kami.core.crypto import normalise_key
from kami.core.errors import BadInput, Conflict
from kami.stock.bulk import StoreRace, chunk_size, keys_store, keys_stored
from kami.stock.selectors import available_count
from kami.stock.models import ImportBatch, Key
from kami.stock.report import ImportReport
from kami.stock.vault import keys_seal_bulk

MAX_CHARS = 1024
# The longest acceptable line in bytes: 1,024 four-byte characters plus a line ending and some
# padding. A line longer than this is surely too long and is skipped unread.
_READ_LIMIT = MAX_CHARS * 4 + 64
_BOM = b"\xef\xbb\xbf"
# Magic bytes of the packed formats a distributor might send (each holds a byte a key line cannot).
_PACKED = ((re.compile(rb"\x1f\x8b"), "compressed (gzip)"), (re.compile(rb"PK\x03\x04"), "a zip archive"),
           (re.compile(rb"BZh[1-9]1AY&SY"), "compressed (bzip2)"), (re.compile(rb"\xfd7zXZ\x00"), "compressed (xz)"),
           (re.compile(rb"\x28\xb5\x2f\xfd"), "compressed (zstd)"), (re.compile(rb"7z\xbc\xaf\x27\x1c"), "a 7z archive"),
           (re.compile(rb"Rar!\x1a\x07"), "a RAR archive"))
# Control characters other than tab (a key may be "account<TAB>password"): a CR left inside a
# line (old Mac line endings), form feeds, DEL, C1 controls all mean a damaged file.
_CONTROL = re.compile(r"[\x01-\x08\x0a-\x1f\x7f-\x9f]")

Progress = Callable[[ImportReport], None]
# (line number, raw key bytes | None: line too long | str: a problem the reader found)
Row = tuple[int, "bytes | None | str"]
Reader = Callable[[BinaryIO, ImportReport], Iterator[Row]]
T = TypeVar("T")


class Sealed(NamedTuple):
    """A key ready to store: its plaintext is already gone."""

    line: int
    key_id: str
    ciphertext: bytes
    fingerprint: str


def keys_import(*, product: Product, stream: BinaryIO, source: str, actor: str = "cli", ip: str = "",
                batch_size: int | None = None, on_progress: Progress | None = None) -> ImportReport:
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
                     batch_size: int | None = None, on_progress: Progress | None = None) -> None:
    """The import loop: read, check, seal, write a chunk at a time. A chunk is written (and
    `on_progress` called) every `batch_size` keys or `batch_size` lines, whichever comes first,
    so progress moves even through a run of invalid lines. Continues `report` where it stands
    (a resumed import passes the counts and line number of its last checkpoint).

    Reading, checking and sealing (Python CPU) run in a thread one chunk ahead of the writing
    (mostly waiting on the database, GIL released), so the two overlap on two cores. The
    reader's thread touches no database connection and no `report`: each chunk carries its
    problems and its end position, applied here, so `report` (the job's checkpoint) always
    describes exactly what was written."""
    size = batch_size or chunk_size()
    parcels = _parcels(reader or read_lines, stream, lines=report.lines, bytes_read=report.bytes_read,
                       size=size, product_id=batch.product_id)
    with closing(ahead(parcels)) as chunks:  # an error here stops the reading thread at once
        for parcel in chunks:
            for line, problem in parcel.problems:
                report.note_invalid(line, problem)
            report.blank += parcel.blank
            report.lines, report.bytes_read = parcel.lines, parcel.bytes_read
            write_chunk(batch=batch, chunk=parcel.sealed, report=report)
            if on_progress:
                on_progress(report)


class Parcel(NamedTuple):
    """One chunk as read: its keys sealed, its problem lines, and where the reading stood after it."""

    sealed: list[Sealed]
    problems: list[tuple[int, str]]
    blank: int
    lines: int
    bytes_read: int


def _parcels(read: Reader, stream: BinaryIO, *, lines: int, bytes_read: int, size: int,
             product_id: int) -> Iterator[Parcel]:
    """The file as chunks; always ends with one more (maybe empty) chunk at the end of the file."""
    position = ImportReport(lines=lines, bytes_read=bytes_read)  # the reader's own counter
    numbers: list[int] = []
    texts: list[str] = []
    problems: list[tuple[int, str]] = []
    blank, flushed_at = 0, lines

    def parcel() -> Parcel:
        sealed = [Sealed(n, *s) for n, s in zip(numbers, keys_seal_bulk(texts, product_id=product_id))]
        return Parcel(sealed, problems, blank, position.lines, position.bytes_read)

    for line, raw in read(stream, position):
        problem, text = (raw, "") if isinstance(raw, str) else line_check(raw)
        if problem:
            problems.append((line, problem))
        elif text:
            numbers.append(line)
            texts.append(text)
        else:
            blank += 1
        if len(texts) >= size or line - flushed_at >= size:
            yield parcel()
            numbers, texts, problems, blank, flushed_at = [], [], [], 0, line
    yield parcel()


def ahead(items: Iterator[T], depth: int = 1) -> Iterator[T]:
    """`items`, produced in a thread of their own up to `depth` ahead of the consumer. An
    exception in the thread is raised here; leaving the loop early stops the thread."""
    box: queue.Queue = queue.Queue(maxsize=depth)
    halt = threading.Event()

    def put(entry) -> bool:
        while not halt.is_set():
            try:
                box.put(entry, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not put((True, item)):
                    break
            else:
                put((False, None))
        except BaseException as exc:  # noqa: BLE001 — handed to the consumer, raised there
            put((False, exc))
        finally:
            if hasattr(items, "close"):
                items.close()  # a generator left early ends in the thread that ran it

    thread = threading.Thread(target=produce, name="kami-import-read", daemon=True)
    thread.start()
    try:
        while True:
            more, item = box.get()
            if not more:
                if item is not None:
                    raise item
                return
            yield item
    finally:
        halt.set()
        thread.join()


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
        if number == 1:
            _refuse_packed(raw)
        if len(raw) == limit and not raw.endswith(b"\n"):
            while raw and not raw.endswith(b"\n"):  # drain the rest of the line without keeping it
                raw = stream.readline(limit)
                report.bytes_read += len(raw)
            raw = None
        elif number == 1 and raw.startswith(_BOM):  # after the length check: the BOM counts towards it
            raw = raw[len(_BOM):]  # Windows editors mark UTF-8 files this way
        yield number, raw


def _refuse_packed(first: bytes) -> None:
    """A compressed or archived file is refused by its magic bytes: read as text, the lines of
    a .gz that happen to be UTF-8 would be imported as keys."""
    for magic, kind in _PACKED:
        if magic.match(first):
            raise BadInput(f"this file is {kind}, not a text file of keys: unpack it and import the text file inside")


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
    if not text.isascii():  # invisible format characters (U+200B, U+202E, a BOM…) would make look-alike keys
        hidden = next((c for c in text if unicodedata.category(c) == "Cf"), None)
        if hidden:
            return f"contains invisible character U+{ord(hidden):04X} (remove it)", ""
    return "", text


def batch_start(*, product: Product, source: str, actor: str) -> tuple[ImportBatch, ImportReport]:
    batch = ImportBatch.objects.create(product=product, source=source[:255], actor=actor[:150])
    return batch, ImportReport(batch_id=batch.pk)


def write_chunk(*, batch: ImportBatch, chunk: list[Sealed], report: ImportReport, attempts: int = 3) -> int:
    """Store the chunk's new keys; report its duplicates. Returns how many keys were stored.

    A concurrent import of the same key can win between our look-up and our insert (MariaDB,
    SQLite); the unique constraint then refuses the whole chunk, and we look again (the winner
    has committed). Call it outside any transaction: each chunk commits on its own
    (kami.stock.bulk holds the SQL per engine).
    """
    fresh: dict[str, Sealed] = {}
    for item in chunk:
        if item.fingerprint in fresh:
            report.note_duplicate(item.line, in_file=True, same_as=f"line {fresh[item.fingerprint].line}")
        else:
            fresh[item.fingerprint] = item
    if not fresh:
        return 0
    counts = {"imported": report.imported, "duplicates": report.duplicates, "invalid": report.invalid}
    for attempt in range(1, attempts + 1):
        try:
            existing, stored, report.direct = keys_store(batch=batch, fresh=list(fresh.values()), counts=counts,
                                                         direct=report.direct)
        except (IntegrityError, OperationalError, StoreRace) as exc:
            # Lost a race on the unique constraint, or a deadlock/lock timeout against a
            # concurrent import of the same keys: the chunk rolled back whole; look again.
            if attempt == attempts and isinstance(exc, OperationalError):
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


def _refresh_statistics() -> None:
    """After an import's first chunk, let PostgreSQL see the product's keys. With statistics
    gathered before the product had keys, the planner takes `product_id = X` for one row and
    may probe fingerprints through key_claim, scanning the product's every key per lookup, and
    plan the product's claims badly. ANALYZE samples: tens of ms."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(f"ANALYZE {connection.ops.quote_name(Key._meta.db_table)}")


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
