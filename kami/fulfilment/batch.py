"""Group commit: paid notifications that arrive together in one server process are confirmed in
one transaction (issue 9; PostgreSQL).

    request thread ─► payment_confirm_grouped ─► queue ─┬─ no batch running: this thread leads
                                                        └─ else: wait for its outcome (or to lead)
    leader: take everything queued ─► BEGIN; payment_decide for each, in order-number order; COMMIT
            ─► each member gets its own outcome ─► the first member queued meanwhile leads next

No timer: a notification that finds no batch running is confirmed at once, alone, through
`payment_confirm` (its deadlock retry and waiting claim included). Notifications queue only while
a commit is in flight, so a batch is whatever arrived during the previous one.

Every member keeps its own outcome: `payment_decide` (kami/fulfilment/confirm.py) is the same
per-notice confirm the single path runs — the set-based statement for the common case, the ORM
path for every other — and the member's `record` (notify.py: its raw notification row) runs
in the batch's transaction, so a confirmed notification's row commits with it.

A batch is all-or-nothing. If anything in it fails (a database error, a deadlock, a short claim
under SKIP LOCKED), the transaction rolls back whole and every member runs again alone, in its own
thread, through `payment_confirm`: a bad notification never takes good ones down, and each keeps
the single path's error handling (notify.py then writes the raw row alone, with the error).

Locks: members are confirmed in order-number order, so batches lock orders in one global order;
inside a batch keys are only claimed with SKIP LOCKED, never waited on.
"""
from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from django.conf import settings
from django.db import connection, transaction

from kami.fulfilment.confirm import Outcome, payment_confirm, payment_decide
from kami.payments.interface import Notice

log = logging.getLogger("kami.fulfilment")


@dataclass(eq=False)
class _Member:
    gateway: str
    notice: Notice
    record: Callable[[Outcome], None] | None
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

    def confirm(self, *, gateway: str, notice: Notice, record: Callable[[Outcome], None] | None) -> Outcome:
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
        try:
            with transaction.atomic():  # the group commit: every member's confirm and raw notification, or none
                outcomes = [payment_decide(gateway=m.gateway, notice=m.notice, record=m.record)
                            for m in sorted(batch, key=lambda m: m.notice.order_no)]
        except Exception as exc:  # one bad member: the rest must not fail with it
            log.info("a batch of %d confirms rolled back (%s); each runs again alone", len(batch), type(exc).__name__)
            return
        for member, outcome in zip(sorted(batch, key=lambda m: m.notice.order_no), outcomes):
            member.outcome = outcome
        self.sizes[len(batch)] += 1


BATCHER = Batcher()


def payment_confirm_grouped(*, gateway: str, notice: Notice, record: Callable[[Outcome], None] | None = None) -> Outcome:
    """`payment_confirm`, through the process's group commit where it applies (PostgreSQL,
    KAMI_CONFIRM_BATCH, not inside a caller's transaction); same outcomes, same errors."""
    if not (settings.KAMI_CONFIRM_BATCH and connection.vendor == "postgresql") or connection.in_atomic_block:
        return payment_confirm(gateway=gateway, notice=notice, record=record)
    return BATCHER.confirm(gateway=gateway, notice=notice, record=record)
