"""Storing a chunk of sealed keys, one short transaction per chunk, per engine (the import's and
the generator's write path; `kami.stock.importer.write_chunk` is its one caller).

    keys_store(batch, fresh, counts) -> ({fingerprint: (key id, batch id)} already stored, number stored)

`fresh` holds keys whose fingerprints differ from each other (the caller dedupes a chunk); the
answer names the ones the product already had, for the report ("already stored", or "duplicate
in the file" when the stored key is from this same batch).

- PostgreSQL, `direct`: the chunk is COPYed (binary) straight into the key table (COPY_POSTGRES).
  When it goes in, no key of it was stored before: the unique index said so, at no extra cost.
  When a key was (IntegrityError), the chunk rolls back and goes the staged way, and so do the
  import's later chunks (the caller stops asking for `direct`): a file that repeats stored keys
  usually repeats many.
- PostgreSQL, staged: the chunk is COPYed into a temporary table dropped at commit, then one
  `INSERT … SELECT … ON CONFLICT DO NOTHING RETURNING fingerprint` (STAGE_INSERT_POSTGRES)
  stores what is new; only when it stored fewer than it was given are the others looked up.
  No per-key round trip, no look-up before the insert (the unique index is probed once, by the
  insert), and a concurrent import of the same keys never fails the chunk: ON CONFLICT waits
  for it and skips what it committed.
- MariaDB and SQLite: the chunk's fingerprints are looked up (`fingerprint IN (…)`), then the new
  keys are inserted by executemany (PyMySQL folds it into multi-row INSERTs of about 1 MB; on
  SQLite it is one prepared statement run per row, inside the chunk's one transaction). A
  concurrent import that wins a key between the look-up and the insert makes the unique
  constraint refuse the chunk; write_chunk rolls back and runs it again.

Values pass through each field's get_db_prep_save, so every engine receives what the ORM would
send. Each key records what it is imported as (`reusable`, from the product's kind now) and its
sealing format. The ORM reference is `Key.objects.bulk_create`; tests/stock/test_bulk.py
compares this path's rows with it.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

from django.db import IntegrityError, connection, transaction

from kami.catalog.models import Product
from kami.core import clock
from kami.stock.models import ImportBatch, Key

if TYPE_CHECKING:
    from kami.stock.importer import Sealed

# Rows per chunk when the caller does not say. Larger chunks mean fewer round trips and
# commits; each chunk in flight holds about 300 bytes per key (kami.stock.importer keeps at
# most three: being read, queued, being written). On PostgreSQL 20,000 was no faster than
# 10,000 (98.4 against 98.3 s for 600,000 keys) and grew the resident set twice as much (26
# against 14 MiB). SQLite holds its one writer lock for a chunk's insert, which concurrent
# sales wait for: a smaller chunk there.
CHUNK = {"postgresql": 10_000, "mysql": 10_000, "sqlite": 5_000}

_COLUMNS = ("product", "batch", "key_id", "ciphertext", "fingerprint", "status", "created_at", "void_reason",
            "reusable", "seal")

# work_mem: the chunk's sort by line stays in memory (4 MB, the default, spilled it to disk).
COPY_POSTGRES = "COPY {table} ({columns}) FROM STDIN (FORMAT BINARY)"
STAGE_CREATE_POSTGRES = ("SET LOCAL work_mem = '64MB'; CREATE TEMPORARY TABLE kami_import_stage "
                         "(line integer, key_id text, ciphertext bytea, fingerprint text) ON COMMIT DROP")
STAGE_COPY_POSTGRES = "COPY kami_import_stage (line, key_id, ciphertext, fingerprint) FROM STDIN (FORMAT BINARY)"
# {table} {columns} {conflict}: identifiers from the model; every value is a parameter. ORDER BY
# line: ids follow the file's order. The staged columns come in _COLUMNS' 3rd–5th places.
STAGE_INSERT_POSTGRES = ("INSERT INTO {table} ({columns}) "
                         "SELECT %s, %s, s.key_id, s.ciphertext, s.fingerprint, %s, %s, %s, %s, %s "
                         "FROM kami_import_stage s ORDER BY s.line "
                         "ON CONFLICT ({conflict}) DO NOTHING RETURNING {fingerprint}")
INSERT_ROWS = "INSERT INTO {table} ({columns}) VALUES ({values})"


class Stored(NamedTuple):
    existing: dict[str, tuple[int, int | None]]  # {fingerprint: (key id, batch id)} already stored
    stored: int  # keys inserted
    direct: bool  # the chunk went straight in (PostgreSQL): ask for `direct` again next time


class StoreRace(Exception):
    """A key refused as stored could not be found afterwards (deleted meanwhile): run the chunk again."""


def chunk_size() -> int:
    return CHUNK.get(connection.vendor, 5_000)


def keys_store(*, batch: ImportBatch, fresh: list[Sealed], counts: dict[str, int], direct: bool = False) -> Stored:
    """Store the new keys among `fresh` in one transaction; `counts` (imported, duplicates,
    invalid before this chunk) move the batch row's counts with it, so an import cut short
    still says what it did. `direct`: try the PostgreSQL chunk straight into the table first."""
    if direct and connection.vendor == "postgresql":
        try:
            with transaction.atomic():  # the chunk whole, or not at all
                _copy_postgres(batch, fresh)
                _count(batch, counts, stored=len(fresh), duplicates=0)
            return Stored({}, len(fresh), True)
        except IntegrityError:
            pass  # a key of the chunk is stored already: the staged way tells which
    with transaction.atomic():  # one short transaction per chunk: insert, look up, count
        if connection.vendor == "postgresql":
            existing, stored = _store_postgres(batch, fresh)
        else:
            existing = keys_stored(batch.product_id, [s.fingerprint for s in fresh])
            new = [s for s in fresh if s.fingerprint not in existing]
            _insert_rows(batch, new)
            stored = len(new)
        _count(batch, counts, stored=stored, duplicates=len(existing))
    return Stored(existing, stored, False)


def _count(batch: ImportBatch, counts: dict[str, int], *, stored: int, duplicates: int) -> None:
    ImportBatch.objects.filter(pk=batch.pk).update(imported=counts["imported"] + stored,
                                                   duplicates=counts["duplicates"] + duplicates,
                                                   invalid=counts["invalid"])


def _names() -> dict[str, str]:
    meta, quote = Key._meta, connection.ops.quote_name
    return {"table": quote(meta.db_table),
            "columns": ", ".join(quote(meta.get_field(name).column) for name in _COLUMNS),
            "conflict": ", ".join(quote(meta.get_field(name).column) for name in ("product", "fingerprint")),
            "fingerprint": quote(meta.get_field("fingerprint").column)}


def _fixed_values(batch: ImportBatch) -> tuple[list, list]:
    """(leading, trailing) column values every row of the batch shares, prepared for the engine."""
    prep = {name: Key._meta.get_field(name).get_db_prep_save for name in _COLUMNS}
    lead = [prep["product"](batch.product_id, connection), prep["batch"](batch.pk, connection)]
    reusable = batch.product.kind == Product.Kind.REUSABLE
    tail = [prep["status"](Key.Status.AVAILABLE.value, connection), prep["created_at"](clock.now(), connection),
            prep["void_reason"]("", connection), prep["reusable"](reusable, connection),
            prep["seal"](Key.Seal.BOUND.value, connection)]
    return lead, tail


def _copy_postgres(batch: ImportBatch, fresh: list[Sealed]) -> None:
    lead, tail = _fixed_values(batch)
    types = ["int8", "int8", "text", "bytea", "text", "text", "timestamptz", "text", "bool", "int2"]
    with connection.cursor() as cursor, connection.wrap_database_errors:
        with cursor.cursor.copy(COPY_POSTGRES.format(**_names())) as copy:
            copy.set_types(types)
            for s in fresh:
                copy.write_row((*lead, s.key_id, s.ciphertext, s.fingerprint, *tail))


def _store_postgres(batch: ImportBatch, fresh: list[Sealed]) -> tuple[dict[str, tuple[int, int | None]], int]:
    lead, tail = _fixed_values(batch)
    with connection.cursor() as cursor:
        cursor.execute(STAGE_CREATE_POSTGRES)
        # The driver's own cursor for COPY, so Django's error mapping is put back by hand.
        with connection.wrap_database_errors, cursor.cursor.copy(STAGE_COPY_POSTGRES) as copy:
            copy.set_types(["int4", "text", "bytea", "text"])
            for s in fresh:
                copy.write_row((s.line, s.key_id, s.ciphertext, s.fingerprint))
        cursor.execute(STAGE_INSERT_POSTGRES.format(**_names()), [*lead, *tail])
        stored = cursor.rowcount
        if stored == len(fresh):
            return {}, stored
        inserted = {fingerprint for (fingerprint,) in cursor.fetchall()}
    missing = [s.fingerprint for s in fresh if s.fingerprint not in inserted]
    existing = keys_stored(batch.product_id, missing)
    if len(existing) != len(missing):
        raise StoreRace()
    return existing, stored


def _insert_rows(batch: ImportBatch, sealed: list[Sealed]) -> None:
    """executemany of plain rows (MariaDB, SQLite): bulk_create spent 70% of a large import
    preparing values one field at a time."""
    if not sealed:
        return
    lead, tail = _fixed_values(batch)
    binary = Key._meta.get_field("ciphertext").get_db_prep_save
    rows = [(*lead, s.key_id, binary(s.ciphertext, connection), s.fingerprint, *tail) for s in sealed]
    sql = INSERT_ROWS.format(values=", ".join(["%s"] * len(_COLUMNS)), **_names())
    with connection.cursor() as cursor:
        cursor.executemany(sql, rows)


def keys_stored(product_id: int, fingerprints: list[str]) -> dict[str, tuple[int, int | None]]:
    """{fingerprint: (key id, batch id)} of the product's keys among `fingerprints`.

    On PostgreSQL the plain `fingerprint IN (…)` query trusts the statistics about the product,
    and those are stale exactly when it matters (a new product's first big import): it then
    scanned every key of the product for each chunk. One probe of the unique index per
    fingerprint (LIMIT 1 keeps the planner from flattening it) is immune.
    """
    if not fingerprints:
        return {}
    if connection.vendor != "postgresql":
        found: dict[str, tuple[int, int | None]] = {}
        for start in range(0, len(fingerprints), 5_000):  # SQLite allows 32,766 parameters a statement
            keys = Key.objects.filter(product_id=product_id, fingerprint__in=fingerprints[start:start + 5_000])
            found.update((fp, (pk, batch_id)) for fp, pk, batch_id in keys.values_list("fingerprint", "id", "batch_id"))
        return found
    meta, quote = Key._meta, connection.ops.quote_name
    column = {name: quote(meta.get_field(name).column) for name in ("product", "fingerprint", "batch")}
    sql = (f"SELECT f.fp, k.id, k.b FROM unnest(%s::text[]) AS f(fp) CROSS JOIN LATERAL "
           f"(SELECT {quote('id')} AS id, {column['batch']} AS b FROM {quote(meta.db_table)} "
           f"WHERE {column['product']} = %s AND {column['fingerprint']} = f.fp LIMIT 1) AS k")
    with connection.cursor() as cursor:
        cursor.execute(sql, [fingerprints, product_id])
        return {fp: (pk, batch_id) for fp, pk, batch_id in cursor.fetchall()}
