"""The `kami` console command: Django's management commands plus Kami's own. `kami` and
`kami help` list Kami's (kami.cli.overview); a command run before `kami migrate` says so in one line.

Exit status: 0 done · 2 bad usage or bad input (the message on stderr names it) · 1 other failure.
"""
from __future__ import annotations

import os
import sys

OVERVIEW = ([], ["help"], ["-h"], ["--help"], ["help", "--all"], ["--help", "--all"])


def main(argv: list[str] | None = None) -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "kami.settings")
    import django
    from django.core.management import execute_from_command_line
    from django.db import DatabaseError

    args = list(sys.argv[1:] if argv is None else argv)
    if args in OVERVIEW:
        django.setup()
        from kami.cli.overview import overview

        sys.stdout.write(overview(everything="--all" in args))
        return
    try:
        execute_from_command_line(["kami", *args])
    except (DatabaseError, OSError) as exc:
        full = _storage_full(exc)  # outside a command too: settings writing the data dir's files
        if full is not None and "--traceback" not in args:
            sys.stderr.write(f"CommandError: {full}\n")
            sys.exit(1)
        if not isinstance(exc, DatabaseError):
            raise
        advice = None if "--traceback" in args else database_advice()
        if advice is None:
            raise
        sys.stderr.write(f"CommandError: {advice}\n")
        sys.exit(2)


def _storage_full(exc: BaseException):
    from kami.core.errors import storage_full

    try:
        return storage_full(exc)
    except Exception:  # noqa: BLE001 — settings not loaded (the failure was in them): the original error says more
        return None


def database_advice() -> str | None:
    """After a database error: one line saying the tables are missing or behind and the command
    that sets them up, when that is the cause (unapplied migrations); None otherwise. Checked
    only after a failure, so a working command pays nothing for it."""
    from django.db import connection
    from django.db.migrations.executor import MigrationExecutor

    try:
        executor = MigrationExecutor(connection)
        plan = executor.migration_plan(executor.loader.graph.leaf_nodes())
        applied = executor.loader.applied_migrations
    except Exception:  # noqa: BLE001 — unreachable database, broken migration: the original error says more
        return None
    if not plan:
        return None
    if not applied:
        return "the database is not set up yet: run `kami migrate` first (it creates the tables)"
    return f"the database is not up to date ({len(plan)} migration(s) not applied): run `kami migrate`"


if __name__ == "__main__":
    main()
