"""Telling a full disk from other failures (kami.core.errors.storage_full): what the CLI, the
pages and the import upload turn into "the disk holding … is full: free space there". The real
thing, a full tmpfs under `kami serve`, is tests/faults/test_disk_full.py."""
from __future__ import annotations

import errno
import sqlite3

import pytest
from django.db import OperationalError

from kami.core.errors import BadInput, StorageFull, storage_full, storage_full_raised

pytestmark = pytest.mark.sqlite_only  # no database: the errors are made here


def raised_from(cause: BaseException) -> OperationalError:
    """As Django raises a driver's error: its own type, raised from the driver's."""
    try:
        try:
            raise cause
        except Exception as exc:
            raise OperationalError(*exc.args) from exc
    except OperationalError as wrapped:
        return wrapped


def test_sqlite_full_through_django_names_the_database_directory():
    # when
    full = storage_full(raised_from(sqlite3.OperationalError("database or disk is full")))
    # then
    assert isinstance(full, StorageFull) and full.code == "storage_full"
    assert str(full).startswith("the disk holding ") and "Free space there" in str(full)


def test_enospc_names_the_directory_of_the_file_being_written(tmp_path):
    # when
    full = storage_full(OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "imports" / "x.part")))
    # then
    assert str(full).startswith(f"the disk holding {tmp_path / 'imports'} is full")


def test_database_servers_say_it_their_own_way():
    class PgDiskFull(Exception):
        sqlstate = "53100"

    assert storage_full(PgDiskFull("could not extend file")) is not None
    assert storage_full(raised_from(Exception(1114, "The table 'stock_key' is full"))) is not None


@pytest.mark.parametrize("error", [
    OperationalError("database is locked"),
    raised_from(sqlite3.OperationalError("disk I/O error")),  # with room on the disk: some other I/O trouble
    OSError(errno.EACCES, "Permission denied", "/x"),
    ValueError("the queue is full"),
])
def test_other_failures_are_not_a_full_disk(error):
    assert storage_full(error) is None


def test_storage_full_raised_turns_a_full_disk_into_the_kami_error_and_leaves_the_rest():
    with pytest.raises(StorageFull) as caught:
        with storage_full_raised():
            raise OSError(errno.ENOSPC, "No space left on device", "/data/imports/x.part")
    assert isinstance(caught.value.__cause__, OSError)
    with pytest.raises(BadInput):
        with storage_full_raised():
            raise BadInput("line 1: too long")
    with pytest.raises(OperationalError):
        with storage_full_raised():
            raise OperationalError("database is locked")
