"""Leases on claimed deliveries: short, and renewed while their worker is alive.

A worker claims a batch and holds it with one lease token (a random value written to every row
of the claim). The lease is short (KAMI_DELIVERY_LEASE_SECONDS, 10) and a thread of the worker
renews it every KAMI_DELIVERY_RENEW_SECONDS (a third of the lease) for the rows it still holds:
one UPDATE per renewal for the whole batch, not one per row. A worker that dies (SIGKILL, the
OOM killer, a power cut) stops renewing, so another worker — or the same one restarted — takes
its rows within the lease, not after minutes. A worker that is merely slow (an SMTP server
taking its time) keeps its rows, because the renewing thread does not wait for the send.

Why not worker heartbeat rows with takeover: that needs a table of workers, a rule for deciding
one is silent, and a second step to move its rows; a short renewed lease says the same thing in
the rows themselves, and the claim query that already takes expired leases does the takeover.

The token, not the lease's end time, says whose a row is: every conditional write (renew, record,
release) matches `lease_token`, so a worker whose lease passed to another never writes over it.
"""
from __future__ import annotations

import logging
import threading
import uuid
from datetime import datetime, timedelta

from django.conf import settings
from django.db import DatabaseError, connection

from kami.core import clock
from kami.delivery.models import OutboxMessage

log = logging.getLogger("kami.delivery.worker")
S = OutboxMessage.Status


def lease_seconds() -> float:
    return float(settings.KAMI_DELIVERY_LEASE_SECONDS)


def renew_seconds() -> float:
    """How often a held batch is renewed: the setting, at most a third of the lease (a renewal
    may be late by a slow database round trip and still land before the lease ends)."""
    wanted = float(settings.KAMI_DELIVERY_RENEW_SECONDS or 0)
    third = lease_seconds() / 3
    return min(wanted, third) if wanted > 0 else third


def lease_end() -> datetime:
    return clock.now() + timedelta(seconds=lease_seconds())


def lease_token_new() -> str:
    return uuid.uuid4().hex


def leases_renew(*, ids: list[int], token: str, until: datetime | None = None) -> int:
    """Extend the lease of the rows in `ids` still held under `token` (to `until`, default a lease
    from now): one UPDATE. Rows already recorded or released (status no longer `sending`), or
    taken over, are left alone."""
    return OutboxMessage.objects.filter(id__in=ids, status=S.SENDING, lease_token=token).update(
        lease_until=until or lease_end())


def lease_surely_held(message: OutboxMessage) -> bool:
    """True when `message`'s lease, as this worker last wrote it, still has a renewal period to
    run: no other worker can have taken the row (a claim takes only rows whose lease has ended), so
    the worker may send without asking the database. False means: ask (kami.delivery.worker)."""
    return (message.lease_until is not None
            and message.lease_until - clock.now() > timedelta(seconds=renew_seconds()))


class LeaseKeeper:
    """Renews a claimed batch's lease from a thread of its own while the batch is worked on:

        with LeaseKeeper(messages):
            ... send them one by one ...

    The thread has its own database connection, closed when the batch is done. A failed renewal
    (the database restarting) is logged and tried again at the next beat; if the lease runs out
    meanwhile, another worker may take the rows, and this one's conditional writes then find
    nothing (its send is recorded as late).

    A renewal that landed while the lease it extends still ran is written into the messages'
    `lease_until` as well, so the sending thread knows its lease holds (`lease_surely_held`)
    without a round trip per message. A renewal that landed late is not: some rows may have
    been taken meanwhile, and the sender asks the database about each (worker._lease_held)."""

    def __init__(self, messages: list[OutboxMessage]):
        self.messages = messages
        self.ids = [m.id for m in messages]
        self.tokens = sorted({m.lease_token for m in messages})
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, name="kami-delivery-lease", daemon=True)

    def __enter__(self) -> LeaseKeeper:
        if self.ids:
            self.thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.done.set()
        if self.thread.is_alive():
            self.thread.join(timeout=lease_seconds())

    def _run(self) -> None:
        failing = False
        try:
            while not self.done.wait(renew_seconds()):
                try:
                    self._renew()
                    if failing:
                        log.info("lease renewal works again (%d deliveries held)", len(self.ids))
                    failing = False
                except DatabaseError as exc:
                    if not failing:
                        log.warning("could not renew the lease of %d deliveries (%s); retrying every %.1fs",
                                    len(self.ids), type(exc).__name__, renew_seconds())
                    failing = True
                    _close_quietly()
        finally:
            _close_quietly()

    def _renew(self) -> None:
        held = min((m.lease_until for m in self.messages if m.lease_until is not None), default=None)
        until = lease_end()
        for token in self.tokens:
            leases_renew(ids=self.ids, token=token, until=until)
        if held is not None and clock.now() < held:  # in time: every row still ours got the new lease
            for m in self.messages:
                if m.lease_until is not None:  # None: recorded or released already
                    m.lease_until = until


def _close_quietly() -> None:
    """Drop this thread's connection (broken or done): the next query opens a fresh one."""
    try:
        connection.close()
    except DatabaseError:
        pass
