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


class SideLoop(threading.Thread):
    """One of the worker's side tasks (pruning, uploaded imports) in a thread of its own, with its
    own database connection, so it never holds up an email: `turn()` again and again until `stop`
    is set, waiting `every` seconds after a turn that found nothing more to do (returned falsy). A
    database restart is said once and retried, any other error logged and retried; the
    connection is closed at the end."""

    def __init__(self, name: str, what: str, turn, every: float, stop: threading.Event):
        super().__init__(name=name, daemon=True)
        self.what, self.turn, self.every, self.stop = what, turn, every, stop

    def run(self) -> None:
        outage = DatabaseOutage(self.what)
        try:
            while not self.stop.is_set():
                close_old_connections()
                more = False
                try:
                    more = self.turn()
                    outage.answered()
                except CONNECTION_LOST as exc:  # a database restart: said once, retried every turn
                    outage.lost(exc)
                    connection.close()
                except Exception:  # noqa: BLE001 — a side task's failure must not end the worker
                    log.exception("%s failed; next try in %ss", self.what, self.every)
                if not more:
                    self.stop.wait(self.every)
        finally:
            connection.close()


def housekeeper(stop: threading.Event) -> SideLoop:
    """Prunes sent deliveries (kami/delivery/housekeeping.py) at start and then every
    PRUNE_EVERY_SECONDS: a long first prune (a year of rows after an upgrade) holds up nothing."""
    def prune() -> bool:
        outbox_prune(stop=stop.is_set)
        return False
    return SideLoop("kami-housekeeping", "outbox prune", prune, PRUNE_EVERY_SECONDS, stop)


def import_runner(owner: str, poll_seconds: float, stop: threading.Event) -> SideLoop:
    """Runs due key-import jobs one at a time; a job cut off by the stop goes back to the queue at
    its last checkpoint."""
    return SideLoop("kami-imports", f"import runner {owner}",
                    lambda: import_jobs_run_due(limit=1, owner=owner, stop=stop.is_set), poll_seconds, stop)


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
        imports = import_runner(f"{worker_id}:imports", float(settings.KAMI_WORKER_POLL_SECONDS), stop)
        imports.start()
        if outbox_prune_enabled():
            housekeeper(stop).start()
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
