"""Import files in the database (kami.stock.jobfiles): rows of at most 1 MiB, read back across
row boundaries, spooled for the worker, cut back to a checkpoint, swept when orphaned, and an
upload of many MiB stored in flat memory. On every engine: the rows are bytea / longblob / BLOB."""
from __future__ import annotations

import io
import os
from datetime import timedelta

import pytest
from django.db import connection

from cryptography.exceptions import InvalidTag

from kami.core import clock
from kami.core.crypto import KeyringError, keyring
from kami.stock.jobfiles import (CHUNK, file_create, file_delete, file_open, file_size, file_spool, file_truncate,
                                 file_write, files_orphaned_delete)
from kami.stock.jobs import import_job_create, import_job_run, imports_dir
from kami.stock.models import ImportFile, ImportFileChunk
from tests.memory import RssWatch
from tests.stock.helpers import stored_keys

pytestmark = pytest.mark.django_db(transaction=True)


def blocks(data: bytes, size: int = 65_537):
    """`data` as an upload hands it over: blocks of a size that does not divide a chunk."""
    for start in range(0, len(data), size):
        yield data[start:start + size]


def test_a_file_is_kept_in_rows_of_at_most_a_chunk_and_read_back_across_them(tmp_path):
    # given
    data = os.urandom(CHUNK * 2 + CHUNK // 2)
    file = file_create()
    # when
    size = file_write(file.pk, blocks(data))
    # then: three rows at their offsets, the last one short
    rows = list(ImportFileChunk.objects.filter(file=file).order_by("offset").values_list("offset", "data"))
    assert size == len(data) == file_size(file.pk)
    assert [(offset, len(chunk)) for offset, chunk in rows] == [(0, CHUNK), (CHUNK, CHUNK), (2 * CHUNK, CHUNK // 2)]
    # and: read whole, and from the middle of a row across the next one's start
    with file_open(file.pk) as f:
        assert f.read() == data
        f.seek(CHUNK - 10)
        assert f.read(20) == data[CHUNK - 10:CHUNK + 10]
        assert f.seek(0, io.SEEK_END) == len(data)
    # and: spooled to a private local file for the worker
    spool = file_spool(file.pk, tmp_path)
    assert spool.read_bytes() == data and spool.stat().st_mode & 0o777 == 0o600


def test_an_upload_is_sealed_with_the_data_key_and_bound_to_its_place():
    # given: an upload's chunk, sealed
    file = file_create()
    file_write(file.pk, [b"SECRET-KEY-1\n"], sealed=True)
    row = ImportFileChunk.objects.get(file=file)
    # then: the row holds no key text, and opens to it
    assert b"SECRET" not in bytes(row.data) and row.key_id == keyring().primary_id
    with file_open(file.pk) as f:
        assert f.read() == b"SECRET-KEY-1\n"
    assert file_size(file.pk) == len(b"SECRET-KEY-1\n")
    # and: the same row copied into another file does not open; a key not in the keyring is named
    other = file_create()
    ImportFileChunk.objects.create(file=other, offset=0, key_id=row.key_id, data=row.data)
    with pytest.raises(InvalidTag), file_open(other.pk) as f:
        f.read()
    ImportFileChunk.objects.filter(file=file).update(key_id="kgone")
    with pytest.raises(KeyringError, match="data key 'kgone' .* is not in the keyring: give this machine"), \
            file_open(file.pk) as f:
        f.read()


def test_a_file_is_cut_back_to_a_checkpoint_and_appended_from_there():
    # given: three writes, the checkpoint after the second
    file = file_create()
    first = file_write(file.pk, [b"line,problem,detail\n"])
    checkpoint = file_write(file.pk, [b"2,bad,\n"], at=first)
    file_write(file.pk, [b"9,written by a run that died,\n"], at=checkpoint)
    # when: a resumed run cuts back and appends
    file_truncate(file.pk, checkpoint)
    file_write(file.pk, [b"9,resumed,\n"], at=checkpoint)
    # then
    with file_open(file.pk) as f:
        assert f.read() == b"line,problem,detail\n2,bad,\n9,resumed,\n"


def test_a_deleted_or_empty_file_cannot_be_spooled(tmp_path):
    file = file_create()
    with pytest.raises(FileNotFoundError):
        file_spool(file.pk, tmp_path)
    file_write(file.pk, [b"K-1\n"])
    file_delete(file.pk)
    assert not ImportFile.objects.exists() and not ImportFileChunk.objects.exists()
    with pytest.raises(FileNotFoundError):
        file_spool(file.pk, tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_an_upload_whose_request_died_is_swept_a_day_later(make_product):
    # given: chunks of an upload no job points at (the request died), and a live job's files
    orphan = file_create()
    file_write(orphan.pk, [b"SECRET-1\n"])
    job = import_job_create(product=make_product(), stream=io.BytesIO(b"K-1\n"), filename="k.txt", actor="alice")
    # when: a day has not passed, nothing goes; once it has, the orphan goes and the job's files stay
    assert files_orphaned_delete() == 0
    ImportFile.objects.update(created_at=clock.now() - timedelta(days=2))
    assert files_orphaned_delete() == 1
    # then
    assert set(ImportFile.objects.values_list("pk", flat=True)) == {job.upload_id, job.report_id}


def test_an_upload_of_several_chunks_imports_every_line(make_product):
    # given: 2,100 keys of 1,000 characters, about 2 MiB: lines cross the rows' boundaries
    product = make_product()
    keys = [f"{i:04d}" + "K" * 996 for i in range(2100)]
    data = ("\n".join(keys) + "\n").encode()
    # when
    job = import_job_create(product=product, stream=blocks(data), filename="long.txt", actor="alice")
    assert ImportFileChunk.objects.filter(file_id=job.upload_id).count() == 3
    job = import_job_run(job_id=job.pk)
    # then
    assert (job.status, job.imported, job.invalid, job.bytes_done) == ("done", 2100, 0, len(data))
    assert stored_keys(product) == keys
    assert list(imports_dir().iterdir()) == []  # the spool is gone


@pytest.mark.slow
def test_a_large_upload_is_stored_in_flat_memory(make_product):
    # given: 96 MiB arriving in 64 kB blocks, never whole in memory
    product = make_product()
    line = b"FLAT-" + b"X" * 58 + b"\n"
    block = line * 1024

    def upload():
        for _ in range(96 * 1024 * 1024 // len(block)):
            yield block

    watch = RssWatch()
    watch.start()
    # when
    try:
        job = import_job_create(product=product, stream=upload(), filename="big.txt", actor="alice")
    finally:
        watch.done.set()
        watch.join()
    # then: stored a chunk at a time; the process grew by a few chunks at most
    print(f"\n96 MiB upload on {connection.vendor}: RSS growth {watch.growth / 2**20:.1f} MiB")
    assert job.bytes_total == 96 * 1024 * 1024 == file_size(job.upload_id)
    assert watch.growth < 32 * 1024 * 1024, f"RSS grew {watch.growth / 2**20:.1f} MiB: the upload is held in memory"
