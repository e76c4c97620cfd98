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

import logging
import threading
from collections import Counter
from dataclasses import dataclass, field

from django.conf import settings
from django.db import connection, transaction

from kami.fulfilment.confirm import Outcome, Record, payment_confirm, payments_decide
from kami.payments.interface import Notice

log = logging.getLogger("kami.fulfilment")


@dataclass(eq=False)
class _Member:
    gateway: str
    notice: Notice
    record: Record | None
    done: threading.Event = field(default_factory=threading.Event)
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
        member = _Member(gateway=gateway, notice=notice, record=record)
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
        model.objects.bulk_create(same)


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
