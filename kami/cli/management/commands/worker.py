"""`kami worker`: deliver the outbox (emails, alerts), run the periodic sweep, run uploaded key
imports and prune old sent deliveries (each in a thread of its own, so neither a long import nor
a long prune ever holds up an email).

Run one or several, on one machine or many: rows are leased, never delivered twice by two
workers. SIGTERM or Ctrl-C stops after the current message; a second Ctrl-C stops at once (a
message cut off mid-send is picked up again when its lease runs out).
"""
from __future__ import annotations

import argparse
import logging
import os
import signal
import socket
import threading
import time

from django.conf import settings
from django.db import close_old_connections, connection

from kami.cli.base import KamiCommand
from kami.cli.startup import refuse_unsafe_start
from kami.delivery.heartbeats import Heartbeat
from kami.delivery.housekeeping import PRUNE_EVERY_SECONDS, outbox_prune, outbox_prune_enabled
from kami.delivery.worker import CONNECTION_LOST, DatabaseOutage, Senders, run_forever, run_pass
from kami.fulfilment.backfill import sweep
from kami.fulfilment.imports import import_jobs_run_due

log = logging.getLogger("kami.worker")


class Sweeper:
    """Calls the fulfilment sweep at most every `interval` seconds (the first call runs it)."""

    def __init__(self, interval: float):
        self.interval = interval
        self.last: float | None = None

    def __call__(self) -> None:
        if self.last is not None and time.monotonic() - self.last < self.interval:
            return
        self.last = time.monotonic()
        result = sweep()
        if any(result.values()):
            log.info("sweep: %s", ", ".join(f"{k} {v}" for k, v in result.items()))


class Housekeeper(threading.Thread):
    """Prunes sent deliveries (kami/delivery/housekeeping.py) at start and then every
    PRUNE_EVERY_SECONDS, in a thread of its own with its own connection, so a long first prune
    (a year of rows after an upgrade) never holds up an email."""

    def __init__(self, stop: threading.Event):
        super().__init__(name="kami-housekeeping", daemon=True)
        self.stop = stop

    def run(self) -> None:
        try:
            while outbox_prune_enabled() and not self.stop.is_set():
                close_old_connections()
                try:
                    outbox_prune(stop=self.stop.is_set)
                except CONNECTION_LOST:  # a database restart: the next turn prunes
                    connection.close()
                except Exception:  # noqa: BLE001 — housekeeping must not end the worker
                    log.exception("outbox prune failed; next try in %ss", PRUNE_EVERY_SECONDS)
                self.stop.wait(PRUNE_EVERY_SECONDS)
        finally:
            connection.close()


class ImportRunner(threading.Thread):
    """Runs due key-import jobs one at a time until `stop` is set; a job cut off by the stop goes
    back to the queue at its last checkpoint. Its own database connection, closed at the end."""

    def __init__(self, owner: str, poll_seconds: float, stop: threading.Event):
        super().__init__(name="kami-imports", daemon=True)
        self.owner, self.poll_seconds, self.stop = owner, poll_seconds, stop

    def run(self) -> None:
        outage = DatabaseOutage(f"import runner {self.owner}")
        try:
            while not self.stop.is_set():
                close_old_connections()
                ran = 0
                try:
                    ran = import_jobs_run_due(limit=1, owner=self.owner, stop=self.stop.is_set)
                    outage.answered()
                except CONNECTION_LOST as exc:  # a database restart: said once, retried every poll
                    outage.lost(exc)
                except Exception:  # noqa: BLE001 — a database hiccup must not end the imports
                    log.exception("import runner %s: pass failed; retrying in %ss", self.owner, self.poll_seconds)
                if not ran:
                    self.stop.wait(self.poll_seconds)
        finally:
            connection.close()


class Command(KamiCommand):
    help = ("Deliver queued emails and admin alerts, run uploaded key imports, and sweep orders (expire unpaid, "
            "backfill awaiting stock).")

    def add_arguments(self, parser):
        parser.add_argument("--once", action="store_true", help="one sweep and one delivery pass, then exit")
        parser.add_argument("--worker-id", default=None, help="name in delivery records (default host:pid)")
        parser.add_argument("--limit", type=int, default=50, help="messages claimed per pass (default 50)")
        parser.add_argument("--senders", type=_senders, default=settings.KAMI_WORKER_SENDERS,
                            help=f"deliveries sent at once, each over its own connection (default "
                                 f"KAMI_WORKER_SENDERS, now {settings.KAMI_WORKER_SENDERS}); a remote mail relay "
                                 "takes 50-500 ms per email, so one at a time is slow in a drop, but providers "
                                 "cap concurrent connections")

    def handle(self, *args, once, worker_id, limit, senders, **options):
        refuse_unsafe_start()
        worker_id = worker_id or f"{socket.gethostname()}:{os.getpid()}"
        if once:
            imports = import_jobs_run_due(limit=100, owner=f"{worker_id}:imports")
            swept = sweep()
            with Senders(senders) as lanes:
                outcomes = run_pass(worker_id=worker_id, limit=limit, senders=lanes)
            pruned = outbox_prune().deliveries if outbox_prune_enabled() else 0
            counts = ", ".join(f"{k} {outcomes.get(k, 0)}" for k in ("sent", "failed", "manual", "lost"))
            self.stdout.write(f"deliveries: {sum(outcomes.values())} ({counts}); "
                              f"sweep: {', '.join(f'{k} {v}' for k, v in swept.items())}; pruned: {pruned}; "
                              f"imports: {imports}")
            return
        stop = threading.Event()
        previous = _on_signals(stop)
        imports = ImportRunner(f"{worker_id}:imports", float(settings.KAMI_WORKER_POLL_SECONDS), stop)
        imports.start()
        Housekeeper(stop).start()
        if parent := int(os.environ.get("KAMI_WORKER_PARENT_PID") or 0):
            threading.Thread(target=_stop_when_orphaned, args=(parent, stop), name="kami-parent-watch",
                             daemon=True).start()
        try:
            run_forever(worker_id, poll_seconds=float(settings.KAMI_WORKER_POLL_SECONDS), stop_event=stop,
                        on_pass=Sweeper(float(settings.KAMI_SWEEP_SECONDS)), limit=limit,
                        heartbeat=Heartbeat(worker_id), senders=senders)
        except KeyboardInterrupt:
            self.stderr.write("interrupted: a message cut off mid-send is retried when its lease expires")
            raise SystemExit(130) from None
        finally:
            stop.set()
            imports.join(timeout=30)  # it stops between chunks; a job cut off is resumed by the next worker
            for signum, handler in previous.items():
                signal.signal(signum, handler)


def _senders(text: str) -> int:
    """--senders: a whole number from 1 to 64, as KAMI_WORKER_SENDERS."""
    if not str(text).isdigit() or not 1 <= int(text) <= 64:
        raise argparse.ArgumentTypeError(f"{text!r}: give a whole number from 1 to 64")
    return int(text)


def _stop_when_orphaned(parent: int, stop: threading.Event) -> None:
    """Started by `kami serve`: when serve is gone (SIGKILL, the OOM killer), stop as on SIGTERM —
    finish the current message, hand the rest back — so a restarted serve's worker is the only one."""
    while not stop.wait(1):
        if os.getppid() != parent:
            log.warning("kami serve (pid %s) is gone: this worker stops after the current message", parent)
            stop.set()


SAME_STOP = 1.0  # seconds


def _on_signals(stop: threading.Event) -> dict:
    """SIGTERM/SIGINT set `stop` (finish the current message, then exit); a second one interrupts
    — unless it comes within SAME_STOP seconds of the first: a stop of the whole process group
    (systemd, `kill -- -PGID`) reaches `kami serve`'s worker twice at once, from the group and then
    from serve, and that is one request to stop, not two."""
    first: list[float] = []

    def handler(signum, frame):
        if stop.is_set() and first and time.monotonic() - first[0] >= SAME_STOP:
            raise KeyboardInterrupt
        if stop.is_set():
            return
        first.append(time.monotonic())
        log.info("%s: stopping after the current message (again to stop at once)", signal.Signals(signum).name)
        stop.set()

    previous = {}
    if threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGTERM, signal.SIGINT):
            previous[signum] = signal.signal(signum, handler)
    return previous
