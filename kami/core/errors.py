"""Error types. Anticipated outcomes (sold out, invalid input), retryable trouble (gateway or
SMTP down) and verification failures are distinct so every edge can answer correctly."""
from __future__ import annotations

import errno
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


class KamiError(Exception):
    """Base class. `code` is stable and machine-readable; the message says what to do."""

    code = "error"

    def __init__(self, message: str = "", *, code: str | None = None, **details):
        super().__init__(message)
        if code:
            self.code = code
        self.details = details


class BadInput(KamiError):
    """The caller gave something we cannot accept; the message names the input and the fix."""

    code = "invalid"


class NotFound(KamiError):
    code = "not_found"


class SoldOut(KamiError):
    code = "sold_out"


class Conflict(KamiError):
    code = "conflict"


class VerificationFailed(KamiError):
    """A notification whose signature, merchant id or shape does not check out. Never retried."""

    code = "verification_failed"


class Retryable(KamiError):
    """Trouble that may go away: a gateway or SMTP server down, a lock timeout."""

    code = "retryable"


class StorageFull(Retryable):
    """The disk the data had to go to is full: nothing was saved. The fix is free space there;
    the same action then succeeds (nothing needs a restart)."""

    code = "storage_full"


# What running out of space looks like from each side: SQLite ("database or disk is full", SQLITE_FULL),
# PostgreSQL (SQLSTATE 53100 disk_full, "could not extend file … No space left on device"),
# MariaDB (error 1114 "The table … is full"; errno 28 "No space left on device"), the OS (ENOSPC, EDQUOT).
_FULL_TEXTS = ("database or disk is full", "no space left on device")
_FULL_TABLE = re.compile(r"\btable\b.* is full")
_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)
_FULL_MYSQL_CODES = (1021, 1114)  # ER_DISK_FULL, ER_RECORD_FILE_FULL
_NEARLY_FULL = 1024 * 1024  # bytes: SQLite's "disk I/O error" on a disk with less room than this is the disk being full


def storage_full(exc: BaseException) -> StorageFull | None:
    """`exc` as a StorageFull when running out of disk space caused it (it or the exception it
    was raised from), None otherwise. The message names the place and the fix (for the merchant
    and the log; buyers get a plainer one). SQLite that cannot even create its `-shm` file on
    opening says only "disk I/O error": that counts when the database's disk has (almost) no room."""
    seen: BaseException | None = exc
    for _ in range(8):  # the chain, bounded
        if seen is None:
            return None
        if isinstance(seen, OSError) and seen.errno in _FULL_ERRNOS:
            return StorageFull(_full_message(Path(seen.filename).parent if seen.filename else _local_dir()))
        text = str(seen).lower()
        code = seen.args[0] if seen.args and not isinstance(seen, OSError) else None  # MariaDB: (code, message)
        if (getattr(seen, "sqlstate", None) == "53100" or code in _FULL_MYSQL_CODES
                or any(t in text for t in _FULL_TEXTS) or _FULL_TABLE.search(text)):
            return StorageFull(_full_message(_storage_dir()))
        if "disk i/o error" in text and _free_bytes(_storage_dir()) < _NEARLY_FULL:
            return StorageFull(_full_message(_storage_dir()))
        seen = seen.__cause__ or seen.__context__
    return None


def _storage_dir() -> Path | None:
    """Where the database writes: the SQLite file's directory; None for a database server."""
    from django.db import connection

    if connection.vendor == "sqlite":
        return Path(connection.settings_dict["NAME"]).resolve().parent
    return None


def _local_dir() -> Path:
    """A file of our own that failed to grow, name unknown: the data dir is where Kami writes."""
    from django.conf import settings

    return Path(settings.DATA_DIR)


def _free_bytes(path: Path | None) -> int:
    if path is None:
        return _NEARLY_FULL
    try:
        stats = os.statvfs(path)
    except OSError:
        return _NEARLY_FULL
    return stats.f_bavail * stats.f_frsize


def _full_message(path: Path | None) -> str:
    if path is None:
        return ("the database server's disk is full: nothing was saved. Free space on the database server, "
                "then try again")
    return (f"the disk holding {path} is full ({_free_bytes(path) // 1024:,} KiB free): nothing was saved. "
            f"Free space there (old backups, logs, exports; `df -h {path}` shows it), then try again")


@contextmanager
def storage_full_raised() -> Iterator[None]:
    """Inside it, running out of disk space raises StorageFull (a KamiError, which the edges
    already answer with its message) from the original error; anything else passes unchanged."""
    try:
        yield
    except KamiError:
        raise
    except Exception as exc:
        full = storage_full(exc)
        if full is None:
            raise
        raise full from exc
