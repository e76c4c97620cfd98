"""The files of background imports, kept in the database: the upload and the report.

Why the database and not the data dir: the web that receives an upload and the worker that
imports it may be different machines with different data dirs (docs/scaling.md, "Several
machines"). The database is the one thing both already share, and it is backed up with the
rest; no shared directory, object store or extra credentials to run.

A file is an ImportFile row and its chunks (ImportFileChunk): at most CHUNK bytes each, at their
byte `offset` (an upload's sealed with the data key: it holds plaintext keys; a report's not), written one row per statement and read back one row per query, so memory stays
flat for a 200 MiB upload on every engine (MariaDB's result sets are read whole by the client:
a query per chunk keeps that to one chunk), and each row stays well under MariaDB's
max_allowed_packet (16 MiB by default; a 1 MiB chunk is at most ~2 MiB escaped).

    file_write     append chunks (buffered to CHUNK) at the file's end
    file_open      a seekable binary reader (the CSV header check, the report download)
    file_spool     copy to a private local file (the worker's import reads that: its reader
                   thread touches no database connection)
    file_truncate  cut back to a checkpoint (a resumed report)
    file_delete    the file and its chunks (the upload, when its job ends)
"""
from __future__ import annotations

import io
import os
import secrets
from collections.abc import Iterable
from datetime import timedelta
from pathlib import Path
from typing import BinaryIO

from django.db import transaction
from django.db.models import Q

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from kami.core import clock
from kami.core.crypto import KeyringError, keyring
from kami.stock.models import ImportFile, ImportFileChunk, ImportJob

CHUNK = 1024 * 1024
NONCE = 12
SEAL_OVERHEAD = NONCE + 16  # nonce and GCM tag
ORPHAN_AGE = timedelta(days=1)  # an upload whose request died before its job was created


def file_create() -> ImportFile:
    return ImportFile.objects.create(created_at=clock.now())


def file_write(file_id: int, blocks: Iterable[bytes], *, at: int = 0, sealed: bool = False) -> int:
    """Append `blocks` from byte `at` (the file's current size) in rows of at most CHUNK bytes,
    each sealed with the data key when `sealed`; return the new size. Each row is its own
    statement: no transaction spans the whole file."""
    pending, offset = bytearray(), at
    for block in blocks:
        pending += block
        while len(pending) >= CHUNK:
            offset = _row_write(file_id, offset, bytes(pending[:CHUNK]), sealed)
            del pending[:CHUNK]
    if pending:
        offset = _row_write(file_id, offset, bytes(pending), sealed)
    return offset


def _row_write(file_id: int, offset: int, data: bytes, sealed: bool) -> int:
    key_id, stored = chunk_seal(data, file_id=file_id, offset=offset) if sealed else ("", data)
    ImportFileChunk.objects.create(file_id=file_id, offset=offset, key_id=key_id, data=stored)
    return offset + len(data)


def chunk_seal(data: bytes, *, file_id: int, offset: int) -> tuple[str, bytes]:
    """AES-256-GCM under the newest data key, bound to the chunk's place (a row moved elsewhere fails)."""
    ring = keyring()
    nonce = os.urandom(NONCE)
    return ring.primary_id, nonce + AESGCM(ring.keys[ring.primary_id]).encrypt(nonce, data, _place(file_id, offset))


def _chunk_open(key_id: str, stored, *, file_id: int, offset: int) -> bytes:
    stored = bytes(stored)  # PostgreSQL gives a memoryview
    if not key_id:
        return stored
    key = keyring().keys.get(key_id)
    if key is None:
        raise KeyringError(f"data key {key_id!r} (which sealed this upload) is not in the keyring: "
                       "give this machine the shop's KAMI_DATA_KEY, or upload the file again")
    return AESGCM(key).decrypt(stored[:NONCE], stored[NONCE:], _place(file_id, offset))


def chunks_key_ids() -> list[str]:
    """The data key id of each sealed upload chunk (for the data-key rotation: an old key cannot
    be retired while a queued upload is sealed with it)."""
    return list(ImportFileChunk.objects.exclude(key_id="").values_list("key_id", flat=True))


def chunks_reseal(target: str) -> int:
    """Seal every upload chunk not under the data key `target` (the newest) with it; how many moved."""
    moved = 0
    stale = ImportFileChunk.objects.exclude(key_id="").exclude(key_id=target)
    for pk in stale.values_list("pk", flat=True):
        with transaction.atomic():  # one chunk: read locked, sealed again, written
            chunk = ImportFileChunk.objects.select_for_update().filter(pk=pk).first()
            if chunk is None or chunk.key_id in ("", target):
                continue  # imported and deleted meanwhile, or moved
            data = _chunk_open(chunk.key_id, chunk.data, file_id=chunk.file_id, offset=chunk.offset)
            key_id, stored = chunk_seal(data, file_id=chunk.file_id, offset=chunk.offset)
            moved += ImportFileChunk.objects.filter(pk=pk).update(key_id=key_id, data=stored)
    return moved


def _place(file_id: int, offset: int) -> bytes:
    return f"kami import file {file_id} @{offset}".encode()


def file_size(file_id: int) -> int:
    last = (ImportFileChunk.objects.filter(file_id=file_id).order_by("-offset")
            .values_list("offset", "key_id", "data").first())
    if last is None:
        return 0
    return last[0] + len(last[2]) - (SEAL_OVERHEAD if last[1] else 0)


def file_truncate(file_id: int, size: int) -> None:
    """Cut the file back to `size`, a size it had after a write (rows start at write boundaries)."""
    ImportFileChunk.objects.filter(file_id=file_id, offset__gte=size).delete()


def file_delete(file_id: int | None) -> None:
    if file_id is None:
        return
    ImportFileChunk.objects.filter(file_id=file_id).delete()  # one DELETE, chunks never loaded
    ImportFile.objects.filter(pk=file_id).delete()


def files_orphaned_delete() -> int:
    """Delete files no job points at, a day old: uploads whose request died half-way."""
    old = ImportFile.objects.filter(created_at__lt=clock.now() - ORPHAN_AGE)
    used = ImportJob.objects.filter(Q(upload_id__isnull=False) | Q(report_id__isnull=False))
    orphans = list(old.exclude(pk__in=used.values("upload_id")).exclude(pk__in=used.values("report_id"))
                   .values_list("pk", flat=True)[:100])
    for file_id in orphans:
        file_delete(file_id)
    return len(orphans)


def file_exists(file_id: int | None) -> bool:
    return file_id is not None and ImportFileChunk.objects.filter(file_id=file_id).exists()


def file_open(file_id: int) -> BinaryIO:
    """The file as a buffered, seekable binary reader; one chunk (and the buffer) in memory."""
    return io.BufferedReader(_ChunkReader(file_id), buffer_size=64 * 1024)


def file_spool(file_id: int | None, folder: Path, *, prefix: str = "") -> Path:
    """Copy the file to a new private file `<prefix><random>.spool` in `folder` (0600), chunk by
    chunk; the caller deletes it. FileNotFoundError when the file has no chunks (deleted, or
    never written)."""
    path = folder / f"{prefix}{secrets.token_hex(8)}.spool"
    offset = 0
    try:
        with os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb") as out:
            while (row := _row_at(file_id, offset)) is not None:
                out.write(row[1])
                offset = row[0] + len(row[1])
        if not offset:
            raise FileNotFoundError(f"import file #{file_id} has no content in the database")
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return path


def _row_at(file_id: int, position: int) -> tuple[int, bytes] | None:
    """The chunk holding byte `position`, as (offset, data); None at or past the end."""
    row = (ImportFileChunk.objects.filter(file_id=file_id, offset__lte=position).order_by("-offset")
           .values_list("offset", "key_id", "data").first())
    if row is None:
        return None
    data = _chunk_open(row[1], row[2], file_id=file_id, offset=row[0])
    return (row[0], data) if position < row[0] + len(data) else None


class _ChunkReader(io.RawIOBase):
    """Reads an ImportFile a chunk at a time, keeping only the current chunk."""

    def __init__(self, file_id: int):
        self.file_id, self.position, self.chunk = file_id, 0, (0, b"")

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        if whence == io.SEEK_END:
            offset += file_size(self.file_id)
        elif whence == io.SEEK_CUR:
            offset += self.position
        self.position = max(0, offset)
        return self.position

    def readinto(self, buffer) -> int:
        start, data = self.chunk
        if not start <= self.position < start + len(data):
            row = _row_at(self.file_id, self.position)
            if row is None:
                return 0
            self.chunk = start, data = row
        piece = data[self.position - start:self.position - start + len(buffer)]
        buffer[:len(piece)] = piece
        self.position += len(piece)
        return len(piece)
