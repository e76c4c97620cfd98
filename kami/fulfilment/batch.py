"""Group commit: paid notifications that arrive together in one server process are confirmed in
one transaction (issue 9; PostgreSQL and MariaDB).

    request thread ─► payment_confirm_grouped ─► queue ─┬─ no batch running: this thread leads
                                                        └─ else: wait for its outcome (or to lead)
    leader: take everything queued ─► BEGIN; payments_decide (one statement for the common cases
            on PostgreSQL, one fixed sequence on MariaDB, the rest one by one, in order-number
            order); the raw notification rows in one INSERT; COMMIT
            ─► each member gets its own outcome ─► the first member queued meanwhile leads next

No timer: a notification that finds no batch running is confirmed at once, alone, through
`payment_confirm` (its deadlock retry and waiting claim included). Notifications queue only while
a commit is in flight, so a batch is whatever arrived during the previous one.

Every member keeps its own outcome: `payments_decide` (kami/fulfilment/confirm.py) gives each the
outcome the single path's `payment_decide` gives it when the members run one after another in
order-number order — the members' common cases set-based for the whole batch (one statement on
PostgreSQL, one fixed sequence on MariaDB), every other member through the per-notice confirm,
after it — and the members' `record` rows (notify.py: their raw notification rows) are written
in the batch's transaction, in one INSERT, so a confirmed notification's row commits with it.

A batch is all-or-nothing. If anything in it fails (a database error, a deadlock, a short claim
under SKIP LOCKED), the transaction rolls back whole and every member runs again alone, in its own
thread, through `payment_confirm`: a bad notification never takes good ones down, and each keeps
the single path's error handling (notify.py then writes the raw row alone, with the error).

Locks: members are confirmed in order-number order, so batches lock orders in one global order;
inside a batch keys are only claimed with SKIP LOCKED, never waited on.

Size: a batch is at most one member per request thread (`kami serve --threads`, 16 by default):
while the leader commits, each other thread can have queued one notification.
"""
from __future__ import annotations

import functools
import logging
import threading
from collections import Counter
from dataclasses import dataclass

from django.conf import settings
from django.db import connection, models, transaction

from kami.fulfilment.confirm import Outcome, Record, payment_confirm, payments_decide
from kami.fulfilment.confirm_sql import binding_cursor
from kami.payments.interface import Notice

log = logging.getLogger("kami.fulfilment")


@dataclass(eq=False)
class _Member:
    gateway: str
    notice: Notice
    record: Record | None
    done: threading.Event | None = None  # the request thread waiting on it (batch_loop's members wait on a future)
    outcome: Outcome | None = None
    error: BaseException | None = None
    alone: bool = False  # its batch failed: confirm it again, alone, in its own thread
    lead: bool = False  # woken to lead the next batch


class Batcher:
    """One per process. `sizes` counts the batches committed by size (1: a lone confirm)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._queue: list[_Member] = []
        self._running = False
        self.sizes: Counter[int] = Counter()

    def waiting(self) -> int:
        """Notices queued for the next batch (figures and tests)."""
        with self._lock:
            return len(self._queue)

    def confirm(self, *, gateway: str, notice: Notice, record: Record | None) -> Outcome:
        member = _Member(gateway=gateway, notice=notice, record=record, done=threading.Event())
        with self._lock:
            self._queue.append(member)
            lead, self._running = not self._running, True
        if not lead:
            member.done.wait()
        if lead or member.lead:
            self._lead()
        if member.error is not None:
            raise member.error
        if member.alone:
            return payment_confirm(gateway=gateway, notice=notice, record=record)
        return member.outcome

    def _lead(self) -> None:
        with self._lock:
            batch, self._queue = self._queue, []
        try:
            self._run(batch)
        finally:
            with self._lock:
                if self._queue:
                    self._queue[0].lead = True
                    self._queue[0].done.set()
                else:
                    self._running = False
            for member in batch:
                if member.outcome is None and member.error is None:
                    member.alone = True
                member.done.set()

    def _run(self, batch: list[_Member]) -> None:
        if len(batch) == 1:  # alone: the single path, with its retries; its errors go to its caller
            member = batch[0]
            try:
                member.outcome = payment_confirm(gateway=member.gateway, notice=member.notice, record=member.record)
            except Exception as exc:
                member.error = exc
            self.sizes[1] += 1
            return
        members = sorted(batch, key=lambda m: m.notice.order_no)
        try:
            with transaction.atomic():  # the group commit: every member's confirm and raw notification, or none
                outcomes = payments_decide([(m.gateway, m.notice) for m in members])
                _rows_write([m.record(outcome) for m, outcome in zip(members, outcomes) if m.record is not None])
        except Exception as exc:  # one bad member: the rest must not fail with it
            log.info("a batch of %d confirms rolled back (%s); each runs again alone", len(batch), type(exc).__name__)
            return
        for member, outcome in zip(members, outcomes):
            member.outcome = outcome
        self.sizes[len(batch)] += 1


def _rows_write(rows: list) -> None:
    """The members' rows, one INSERT per model (in the caller's transaction)."""
    by_model: dict[type, list] = {}
    for row in rows:
        if row is not None:
            by_model.setdefault(type(row), []).append(row)
    for model, same in by_model.items():
        plain = _plain(model, connection.vendor) and all(row.pk is None for row in same)
        if not (plain and _rows_insert(model, same)):
            model.objects.bulk_create(same)


@functools.lru_cache(maxsize=64)
def _plain(model: type[models.Model], vendor: str) -> bool:
    """A model `_rows_insert` writes as bulk_create would: one table, an auto-increment key that
    the database returns and nothing else it does (no database defaults, no generated columns)."""
    meta = model._meta
    return (not meta.parents and isinstance(meta.pk, models.AutoField) and meta.db_returning_fields == [meta.pk]
            and not any(getattr(field, "generated", False) or hasattr(field, "get_placeholder")
                        or field.get_internal_type() not in connection.data_types  # a custom type: no array of it
                        for field in meta.concrete_fields))


def _rows_insert(model: type[models.Model], rows: list[models.Model]) -> bool:
    """bulk_create's INSERT without its compiler, which cost the leader (the serial section) more
    than the confirm statement: built once per model (MariaDB: and row count), each value through
    its field as bulk_create sends it (pre_save, get_db_prep_save), the keys set as bulk_create sets
    them. PostgreSQL takes one binary array per column (INSERT … SELECT FROM unnest, Django's own
    bulk_create statement there); MariaDB one multi-row VALUES. tests/fulfilment/test_confirm_batch.py
    compares the rows with the ORM's. False: a value is an expression (F(), a subquery…), not
    written: bulk_create compiles those."""
    fields = [field for field in model._meta.concrete_fields if not field.primary_key]
    returning = connection.features.can_return_rows_from_bulk_insert
    values = [[field.pre_save(row, True) for field in fields] for row in rows]
    if any(hasattr(value, "resolve_expression") for row in values for value in row):
        return False
    prepped = [[field.get_db_prep_save(value, connection) for field, value in zip(fields, row)] for row in values]
    if connection.vendor == "postgresql":
        with binding_cursor() as cursor:
            cursor.execute(_insert_sql(model, 0, connection.vendor, returning), [list(c) for c in zip(*prepped)])
            ids = cursor.fetchall() if returning else ()
    else:
        with connection.cursor() as cursor:
            cursor.execute(_insert_sql(model, len(rows), connection.vendor, returning),
                           [value for row in prepped for value in row])
            ids = cursor.fetchall() if returning else ()
    for row, (pk,) in zip(rows, ids):
        row.pk = pk
    for row in rows:
        row._state.adding, row._state.db = False, connection.alias
    return True


@functools.lru_cache(maxsize=256)
def _insert_sql(model: type[models.Model], count: int, vendor: str, returning: bool) -> str:
    """PostgreSQL: INSERT … SELECT * FROM unnest(%b::type[], …) (`count` unused); else INSERT …
    VALUES (…), (…) for `count` rows. With RETURNING pk where the engine returns it (in row order)."""
    quote = connection.ops.quote_name
    fields = [field for field in model._meta.concrete_fields if not field.primary_key]
    if vendor == "postgresql":  # varchar[], not varchar(32)[]: as bulk_create, nothing is cut on the way
        rows = "SELECT * FROM unnest(" + ", ".join(f"%b::{f.db_type(connection).split('(')[0]}[]" for f in fields) + ")"
    else:
        rows = "VALUES " + ", ".join(["(" + ", ".join(["%s"] * len(fields)) + ")"] * count)
    return (f"INSERT INTO {quote(model._meta.db_table)} ({', '.join(quote(f.column) for f in fields)}) {rows}"
            + (f" RETURNING {quote(model._meta.pk.column)}" if returning else ""))


BATCHER = Batcher()


def payment_confirm_grouped(*, gateway: str, notice: Notice, record: Record | None = None) -> Outcome:
    """`payment_confirm`, through the process's group commit where it applies (PostgreSQL and
    MariaDB, KAMI_CONFIRM_BATCH, not inside a caller's transaction); same outcomes, same errors."""
    if not batches_apply() or connection.in_atomic_block:
        return payment_confirm(gateway=gateway, notice=notice, record=record)
    return BATCHER.confirm(gateway=gateway, notice=notice, record=record)


def batches_apply() -> bool:
    """Group commit is on (KAMI_CONFIRM_BATCH) and the database has writers to share it
    (PostgreSQL, MariaDB; SQLite has one writer, and each confirm keeps its own retries)."""
    return settings.KAMI_CONFIRM_BATCH and connection.vendor in ("postgresql", "mysql")
