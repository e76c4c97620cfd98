"""Worker heartbeats: which `kami worker`s run, for `kami doctor` and `/metrics` to say so.

A worker registers a row when it starts (`heartbeat_start`), moves its `seen_at` forward from
its delivery loop at most every KAMI_WORKER_HEARTBEAT_SECONDS (`Heartbeat.beat`: one UPDATE,
autocommitted on its own), and sets `stopped_at` when it stops cleanly. A worker killed
(SIGKILL, the OOM killer, a power cut) leaves its row behind with `seen_at` growing old: after
KAMI_WORKER_LATE_SECONDS it no longer counts as running, and after
KAMI_WORKER_HEARTBEAT_KEEP_DAYS its row is deleted (by the next worker that starts, and hourly).

The beat comes from the loop, not from a thread of its own: a worker stuck in one pass (a
channel hanging longer than the threshold) is reported as not seen, which is what it is.
Taking rows over from a dead worker is not done here: short renewed leases do that
(kami/delivery/leases.py explains why)."""
from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from importlib import metadata

from django.conf import settings
from django.db import DatabaseError

from kami.core import clock
from kami.delivery.models import WorkerHeartbeat

log = logging.getLogger("kami.delivery.worker")
PRUNE_EVERY_SECONDS = 3600


def kami_version() -> str:
    try:
        return metadata.version("kami-shop")
    except metadata.PackageNotFoundError:  # run from a checkout that was never pip-installed
        return ""


def heartbeat_start(name: str) -> WorkerHeartbeat:
    """Register (or re-register: the same --worker-id restarted) this worker as running now,
    and delete rows silent for longer than KAMI_WORKER_HEARTBEAT_KEEP_DAYS."""
    now = clock.now()
    heartbeats_prune(now=now)
    # one statement each, autocommitted: no transaction held open by a worker
    row, _ = WorkerHeartbeat.objects.update_or_create(name=name[:100], defaults={
        "host": socket.gethostname()[:255], "pid": os.getpid(), "version": kami_version()[:40],
        "started_at": now, "seen_at": now, "stopped_at": None})
    log.info("worker %s: heartbeat every %ss", row.name, settings.KAMI_WORKER_HEARTBEAT_SECONDS)
    return row


def heartbeat_stop(name: str) -> None:
    """A clean stop: the row says so at once, instead of going silent."""
    now = clock.now()
    WorkerHeartbeat.objects.filter(name=name[:100]).update(seen_at=now, stopped_at=now)  # one autocommitted UPDATE


def heartbeats_prune(*, now: datetime | None = None) -> int:
    since = (now or clock.now()) - timedelta(days=settings.KAMI_WORKER_HEARTBEAT_KEEP_DAYS)
    deleted, _ = WorkerHeartbeat.objects.filter(seen_at__lt=since).delete()  # a handful of rows: one autocommitted DELETE
    return deleted


class Heartbeat:
    """Held by a running worker. `beat()` is cheap to call on every loop turn: it writes only
    when KAMI_WORKER_HEARTBEAT_SECONDS have passed, and a database that does not answer costs a
    debug line (the delivery pass reports the outage), never the worker."""

    def __init__(self, name: str):
        self.name = name[:100]
        self.every = float(settings.KAMI_WORKER_HEARTBEAT_SECONDS)
        self.last: float | None = None
        self.registered = False
        self.pruned = time.monotonic()

    def start(self) -> None:
        """Register; with the database down, the first beat that reaches it registers instead."""
        self.registered = False
        self.beat()

    def beat(self) -> None:
        if self.last is not None and time.monotonic() - self.last < self.every:
            return
        try:
            now = clock.now()
            if not self.registered:
                heartbeat_start(self.name)
                self.registered = True
            # one UPDATE, autocommitted: its own short transaction
            elif not WorkerHeartbeat.objects.filter(name=self.name).update(seen_at=now, stopped_at=None):
                heartbeat_start(self.name)  # pruned while this worker was paused for days (SIGSTOP): back
            if time.monotonic() - self.pruned >= PRUNE_EVERY_SECONDS:
                self.pruned = time.monotonic()
                heartbeats_prune(now=now)
            self.last = time.monotonic()
        except DatabaseError as exc:
            log.debug("worker %s: heartbeat not written (%s)", self.name, exc)

    def stop(self) -> None:
        """Record a clean stop. SIGTERM/SIGINT are held back for the one short write: a second
        signal (`kami serve` passing on the SIGTERM its worker already had from systemd's stop of
        the whole group) would otherwise cut it off, and the row would only go silent."""
        try:
            with _stop_signals_held():
                heartbeat_stop(self.name)
        except DatabaseError as exc:  # the row goes silent instead, and stops counting after the threshold
            log.warning("worker %s: could not record the stop (%s)", self.name, exc)


@contextmanager
def _stop_signals_held():
    """Block SIGTERM and SIGINT in this thread; one that came meanwhile is delivered at the end."""
    held = {signal.SIGTERM, signal.SIGINT}
    if threading.current_thread() is not threading.main_thread():
        yield  # Python runs signal handlers in the main thread only: nothing to hold back here
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, held)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


@dataclass(frozen=True)
class WorkerSeen:
    name: str
    host: str
    pid: int
    seen_at: datetime
    stopped_at: datetime | None
    age_seconds: float
    running: bool  # seen within KAMI_WORKER_LATE_SECONDS and not stopped


def workers_seen(*, now: datetime | None = None, late_seconds: float | None = None) -> list[WorkerSeen]:
    """Every worker row, most recently seen first (a handful: rows go after the keep days)."""
    now = now or clock.now()
    late = float(settings.KAMI_WORKER_LATE_SECONDS if late_seconds is None else late_seconds)
    seen = []
    for row in WorkerHeartbeat.objects.order_by("-seen_at", "name"):
        age = max(0.0, (now - row.seen_at).total_seconds())
        seen.append(WorkerSeen(name=row.name, host=row.host, pid=row.pid, seen_at=row.seen_at,
                               stopped_at=row.stopped_at, age_seconds=age,
                               running=row.stopped_at is None and age <= late))
    return seen
