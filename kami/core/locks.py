"""Named locks, for rules that count rows which do not exist yet ("at most N unpaid orders per
email"): a row lock cannot guard an absent row.

PostgreSQL: session advisory locks; MariaDB/MySQL: GET_LOCK. Both are taken before the
transaction that checks and writes, and released after it ends, however it ends (a dead
connection releases them too). SQLite runs every write transaction BEGIN IMMEDIATE, so writers
are already one at a time there: nothing to take.
"""
from __future__ import annotations

import hashlib
from contextlib import contextmanager

from django.db import connection

from kami.core.errors import Retryable

WAIT_SECONDS = 10


def _digest(name: str) -> bytes:
    return hashlib.sha256(name.encode()).digest()


def _take(cursor, name: str) -> None:
    if connection.vendor == "postgresql":
        cursor.execute("SELECT pg_advisory_lock(%s)", [int.from_bytes(_digest(name)[:8], "big", signed=True)])
    elif connection.vendor == "mysql":
        cursor.execute("SELECT GET_LOCK(%s, %s)", ["kami:" + _digest(name).hex()[:50], WAIT_SECONDS])
        if cursor.fetchone()[0] != 1:
            raise Retryable(f"busy: another request holds {name.split(':')[0]!r}; try again in a moment")


def _give(cursor, name: str) -> None:
    if connection.vendor == "postgresql":
        cursor.execute("SELECT pg_advisory_unlock(%s)", [int.from_bytes(_digest(name)[:8], "big", signed=True)])
    elif connection.vendor == "mysql":
        cursor.execute("SELECT RELEASE_LOCK(%s)", ["kami:" + _digest(name).hex()[:50]])


@contextmanager
def named_locks(*names: str):
    """Hold the locks `names` for the block. Taken in sorted order, so two callers never deadlock.
    Wrap the whole transaction (`with named_locks(...): with transaction.atomic(): ...`)."""
    if connection.vendor == "sqlite":
        yield
        return
    held = []
    try:
        with connection.cursor() as cursor:
            for name in sorted(set(names)):
                _take(cursor, name)
                held.append(name)
        yield
    finally:
        with connection.cursor() as cursor:
            for name in reversed(held):
                _give(cursor, name)


# A deadlock's victim is rolled back whole by the database (InnoDB error 1213; PostgreSQL SQLSTATE
# 40P01): the transaction may simply run again from its start.
_DEADLOCK_MYSQL, _DEADLOCK_POSTGRES = 1213, "40P01"


def deadlock_victim(exc: BaseException) -> bool:
    """True when `exc` says the database broke a deadlock by rolling this transaction back."""
    cause = exc.__cause__ or exc
    if getattr(cause, "sqlstate", None) == _DEADLOCK_POSTGRES:
        return True
    return bool(getattr(cause, "args", None)) and cause.args[0] == _DEADLOCK_MYSQL
