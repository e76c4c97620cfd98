"""`kami serve`: the production server (uvicorn running kami/asgi.py: payments confirmed on its
event loop, pages and the rest through the WSGI application in threads; or waitress or granian)
plus a worker process (`kami worker`: deliveries, sweeps and uploaded key imports)."""
from __future__ import annotations

import argparse
import functools
import logging
import os
import signal
import subprocess
import sys

from django.conf import settings
from django.core.management.base import CommandError
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from kami.cli.base import KamiCommand
from kami.cli.startup import refuse_unsafe_start

log = logging.getLogger("kami.serve")


def unapplied_migrations() -> int:
    executor = MigrationExecutor(connection)
    return len(executor.migration_plan(executor.loader.graph.leaf_nodes()))


def startup_warnings() -> list[str]:
    """What a merchant must hear before the shop takes money."""
    warnings = []
    if settings.KAMI_SANDBOX:
        warnings.append("KAMI_SANDBOX=1: THE SANDBOX GATEWAY IS ON. Anyone at this machine can pay sandbox orders "
                        "for free (it answers loopback clients only). Never take real orders with it on.")
    if not settings.EMAIL_URL:
        warnings.append(f"EMAIL_URL is not set: emails are written to files in {settings.EMAIL_FILE_PATH} (without "
                        "keys), not sent to buyers. Set EMAIL_URL=smtp://… to send them.")
    if settings.PRODUCTION and not settings.KAMI_BASE_URL.startswith("https://"):
        warnings.append(f"KAMI_BASE_URL is {settings.KAMI_BASE_URL}: in production it must be https, or gateway "
                        "callbacks fail (WeChat Pay refuses http) and buyers' key links travel in clear text.")
    if settings.PRODUCTION and not settings.KAMI_ADMIN_EMAIL:
        warnings.append("KAMI_ADMIN_EMAIL is not set: alerts (low stock, paid orders awaiting stock, deliveries "
                        "that need a human) only reach the log.")
    from kami.staff.policy import totp_policy_warning
    from kami.staff.roles import owners_exist

    if totp_warning := totp_policy_warning():
        warnings.append(totp_warning)
    if not owners_exist():
        warnings.append("No back-office owner exists yet: run `kami staff setup-link` (a one-time link) or "
                        "`kami staff add NAME --role owner`. There is no default account.")
    return warnings


class Command(KamiCommand):
    requires_system_checks = "__all__"  # once, before the shop takes traffic (KamiCommand skips them)
    help = ("Serve the shop with a production server (uvicorn: payments confirmed on its event loop, pages in "
            "threads) and run a delivery worker beside it.")

    def add_arguments(self, parser):
        parser.add_argument("--host", default=os.environ.get("KAMI_HOST", "127.0.0.1"))
        parser.add_argument("--port", type=int, default=int(os.environ.get("KAMI_PORT", "8000")))
        parser.add_argument("--threads", type=int, default=int(os.environ.get("KAMI_THREADS", str(THREADS_DEFAULT))),
                            help=f"worker threads (each may hold one database connection; default {THREADS_DEFAULT}): "
                                 "notifications that arrive together are confirmed in one transaction, so more "
                                 "threads make bigger batches (docs/performance.md)")
        parser.add_argument("--page-threads", type=_at_least_one, default=os.environ.get("KAMI_PAGE_THREADS", str(PAGE_THREADS_DEFAULT)),
                            help=f"threads for the home and product pages and static files (default {PAGE_THREADS_DEFAULT}; "
                                 "uvicorn only): they are CPU work, and more threads only queue for Python's lock "
                                 "(docs/performance.md)")
        parser.add_argument("--no-worker", action="store_true", help="do not start a delivery worker (run `kami worker` elsewhere)")
        parser.add_argument("--workers", type=functools.partial(_at_least_one, hint=" (--no-worker starts none)"), default=os.environ.get("KAMI_WORKERS", "1"),
                            help="delivery worker processes started beside the server (default 1; each sends "
                                 "KAMI_WORKER_SENDERS deliveries at once). One kept callback -> email under 2 s in a "
                                 "1,000-order sale on two cores (docs/performance.md); more share the queue")
        parser.add_argument("--server", choices=SERVERS, default=os.environ.get("KAMI_SERVER", DEFAULT_SERVER),
                            help=f"the HTTP server (default {DEFAULT_SERVER}; docs/performance.md has them side by side)")
        parser.add_argument("--processes", type=int, default=int(os.environ.get("KAMI_PROCESSES", "0")),
                            help=f"server processes (0, the default: one per core, at most {PROCESSES_MAX}, on "
                                 "PostgreSQL and MariaDB; 1 on SQLite, which has one writer). They share the "
                                 "database and the cache (the data dir's, or KAMI_REDIS_URL)")

    def handle(self, *args, host, port, threads, page_threads, no_worker, workers, server, processes, **options):
        refuse_unsafe_start()
        if unapplied_migrations():
            raise CommandError("the database is not up to date: run `kami migrate` first", returncode=2)
        if "KAMI_BASE_URL" not in os.environ:
            # Links in emails and gateway callbacks point here unless the merchant says otherwise.
            os.environ["KAMI_BASE_URL"] = settings.KAMI_BASE_URL = f"http://{host}:{port}"
        for warning in startup_warnings() + ([GRANIAN_SLOW_SENDERS] if server == "granian" else []):
            log.warning(warning)
        from kami.telegram.runner import serve_hook  # the bot's webhook, when `kami telegram set … webhook` asked

        if telegram := serve_hook():
            self.stdout.write(telegram)
        # The worker watches this process (KAMI_WORKER_PARENT_PID): killed with SIGKILL, serve runs no
        # `finally`, and a restart would otherwise add a worker beside the orphan, one more per crash.
        delivery = [] if no_worker else [subprocess.Popen([sys.executable, "-m", "kami", "worker"],
                                                          env={**os.environ, "KAMI_WORKER_PARENT_PID": str(os.getpid())})
                                         for _ in range(workers)]
        pids = ", ".join(str(worker.pid) for worker in delivery)
        self.stdout.write(f"Kami is serving on http://{host}:{port}/ (base URL {settings.KAMI_BASE_URL})"
                          + (f"; delivery worker pid{'s' if len(delivery) > 1 else ''} {pids}" if delivery else ""))
        self.stdout.write(f"Back office: {settings.KAMI_BASE_URL}/{settings.KAMI_ADMIN_PATH}/")
        if settings.KAMI_TRUSTED_PROXIES:
            self.stdout.write("X-Forwarded-For/-Proto believed from: " + ", ".join(map(str, settings.KAMI_TRUSTED_PROXIES)))
        processes = processes or _processes_default()
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        try:
            if server == "granian":
                _granian(host=host, port=port, threads=threads, processes=processes)
            elif server == "uvicorn":
                if processes > 1:
                    self.stdout.write(f"{processes} server processes of {threads} threads (kami/cli/prefork.py)")
                sys.exit(_uvicorn(host=host, port=port, threads=threads, page_threads=page_threads, processes=processes))
            elif processes > 1:
                self.stdout.write(f"{processes} server processes of {threads} threads (kami/cli/prefork.py)")
                sys.exit(_waitress_forked(host=host, port=port, threads=threads, processes=processes))
            else:
                _waitress(host=host, port=port, threads=threads)
        finally:
            _batches_report()
            for worker in delivery:
                worker.terminate()
            for worker in delivery:
                try:
                    worker.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    worker.kill()


def _at_least_one(text: str, hint: str = "") -> int:
    """A whole number from 1 (--workers, --page-threads, or their environment variables)."""
    if not text.strip().isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: give 1 or more{hint}")
    return int(text)


def _batches_report() -> None:
    """How large the group commit's batches were (kami/fulfilment/batch.py), for whoever measures."""
    from kami.fulfilment.batch import BATCHER

    if BATCHER.sizes:
        log.info("group commit: %d batches, %d notifications, sizes %s", sum(BATCHER.sizes.values()),
                 sum(size * n for size, n in BATCHER.sizes.items()), sorted(BATCHER.sizes.items()))


# Threads per server process. A notification waits for the group commit in its own thread, so the
# threads bound a batch's size: 16 confirmed about twice what 4 did (docs/performance.md, issue 9),
# 32 more again on the notify path, but each thread may keep a database connection
# (CONN_MAX_AGE) and two processes of 32 beside the workers come near PostgreSQL's default of 100.
THREADS_DEFAULT = 16
PAGE_THREADS_DEFAULT = 2  # kami/asgi.py's Application says why so few
SERVERS = ("waitress", "granian", "uvicorn")
DEFAULT_SERVER = "uvicorn"


PROCESSES_MAX = 4  # each process may hold --threads database connections; PostgreSQL allows 100 by default


def _processes_default() -> int:
    """One per core (at most PROCESSES_MAX) on a database server; one on SQLite, where every
    write takes the one writer lock and more processes only queue for it."""
    if connection.vendor == "sqlite":
        return 1
    return max(1, min(os.cpu_count() or 1, PROCESSES_MAX))


def _waitress(*, host: str, port: int, threads: int, sock=None) -> None:
    """`sock`: a socket already listening (a forked server process's); else waitress binds."""
    from waitress import serve

    from kami.wsgi import application

    # Forwarding headers pass through waitress (it trusts one address, not a list of CIDRs);
    # kami.core.net believes them from KAMI_TRUSTED_PROXIES only and drops them otherwise.
    where = {"sockets": [sock]} if sock is not None else {"host": host, "port": port}
    serve(application, **where, threads=threads, ident="kami", clear_untrusted_proxy_headers=False,
          **WAITRESS_LIMITS, max_request_body_size=settings.KAMI_REQUEST_MAX_BYTES)


def _waitress_forked(*, host: str, port: int, threads: int, processes: int) -> int:
    """waitress in `processes` forked processes on one socket (kami/cli/prefork.py); exit code."""
    from django.db import connections

    from kami.cli.prefork import listening_socket, serve_forked
    from kami.wsgi import application  # noqa: F401  loaded once, before the fork: shared, and no process loads it again

    try:
        sock = listening_socket(host, port)
    except OSError as exc:
        raise CommandError(f"cannot listen on {host}:{port}: {exc.strerror or exc}", returncode=2) from None
    connections.close_all()  # no connection may cross the fork: each process opens its own

    def run() -> None:
        try:
            _waitress(host=host, port=port, threads=threads, sock=sock)
        finally:
            _batches_report()

    return serve_forked(processes=processes, run=run)


# Hostile clients (tests/hostile/test_serve_limits.py). waitress reads requests in its event loop
# and hands a thread only a whole request, so slow senders hold sockets, not threads; its default
# of 100 connections let 100 of them shut the shop, so it may hold more (KAMI_SERVE_CONNECTIONS;
# poll(), not select(), which stops at 1,024 descriptors). A connection silent for
# KAMI_SERVE_IDLE_SECONDS is closed. A body larger than KAMI_REQUEST_MAX_BYTES is answered 413 from
# its Content-Length, unread; smaller ones are spooled to disk past 512 KiB, never held in memory,
# then BodyLimitMiddleware refuses what the path does not accept.
WAITRESS_LIMITS = {"connection_limit": int(os.environ.get("KAMI_SERVE_CONNECTIONS", "1000")), "asyncore_use_poll": True,
                   "channel_timeout": int(os.environ.get("KAMI_SERVE_IDLE_SECONDS", "60"))}
GRANIAN_SLOW_SENDERS = ("--server granian reads request bodies in its worker threads: a few clients sending "
                        "slowly can hold them all (granian has no body read timeout). Run it behind a reverse "
                        "proxy that buffers request bodies (nginx does by default), or use the default server (uvicorn).")


def _granian(*, host: str, port: int, threads: int, processes: int) -> None:
    """granian passes headers through as sent: kami.core.net decides about X-Forwarded-*."""
    try:
        from granian import Granian
        from granian.constants import Interfaces
    except ImportError:
        raise CommandError("--server granian needs granian: pip install 'kami-shop[server]'", returncode=2) from None

    Granian("kami.wsgi:application", address=host, port=port, interface=Interfaces.WSGI, workers=processes,
            blocking_threads=threads, websockets=False, log_access=False).serve()




def _uvicorn(*, host: str, port: int, threads: int, page_threads: int, processes: int) -> int:
    """kami.asgi under uvicorn (a verified payment confirmed on the event loop, the storefront's
    pages in `page_threads` threads, the rest in `threads`), in this process or in `processes`
    forked ones on one socket (kami/cli/prefork.py)."""
    try:
        import uvicorn

        from kami.cli.uvicorn_protocol import idle_closing
    except ImportError:
        raise CommandError("--server uvicorn needs uvicorn and httptools: pip install uvicorn httptools",
                           returncode=2) from None
    from django.db import connections

    from kami.asgi import Application
    from kami.cli.prefork import cpu_pin, listening_socket, serve_forked

    try:
        sock = listening_socket(host, port)
    except OSError as exc:
        raise CommandError(f"cannot listen on {host}:{port}: {exc.strerror or exc}", returncode=2) from None
    connections.close_all()  # no connection may cross a fork: each process opens its own
    config = uvicorn.Config(
        Application(threads=threads, page_threads=page_threads), lifespan="off", ws="none", loop="uvloop" if _importable("uvloop") else "asyncio",
        http=idle_closing(WAITRESS_LIMITS["channel_timeout"]), log_config=None, access_log=False, server_header=False,
        proxy_headers=False,  # kami.core.net decides about X-Forwarded-*, from KAMI_TRUSTED_PROXIES only
        limit_concurrency=WAITRESS_LIMITS["connection_limit"], timeout_keep_alive=WAITRESS_LIMITS["channel_timeout"])

    def run() -> None:
        if processes == 1:
            cpu_pin(None)  # a forked one pins itself to its own CPU (kami/cli/prefork.py)
        try:
            uvicorn.Server(config).run(sockets=[sock])
        finally:
            _batches_report()

    if processes > 1:
        return serve_forked(processes=processes, run=run)
    run()
    return 0


def _importable(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None
