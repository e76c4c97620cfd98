"""Background imports from an upload (kami.stock.jobs): formats, limits, progress, report, resume."""
from __future__ import annotations

import csv
import io
import os

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from kami.audit.models import AuditLog
from kami.core import clock
from kami.core.errors import BadInput, Conflict
from kami.stock.jobfiles import file_delete, file_open
from kami.stock.jobs import (import_job_claim_due, import_job_create, import_job_create_from_text, import_job_progress,
                             import_job_report_open, import_job_run, imports_dir)
from kami.stock.models import ImportFile, ImportFileChunk, ImportJob, Key
from kami.stock.vault import key_fingerprint
from tests.factories import add_keys
from tests.stock.helpers import stored_keys

pytestmark = pytest.mark.django_db(transaction=True)


def upload(product, data: bytes, **options) -> ImportJob:
    options.setdefault("filename", "keys.txt")
    options.setdefault("actor", "alice")
    return import_job_create(product=product, stream=io.BytesIO(data), **options)


def stored_file(file_id: int | None) -> bytes:
    """A job file's bytes (upload or report), read back from the database."""
    with file_open(file_id) as f:
        return f.read()


def raw_rows(file_id: int | None) -> bytes:
    """A job file's rows as the database holds them (what a dump would show)."""
    chunks = ImportFileChunk.objects.filter(file_id=file_id).order_by("offset").values_list("data", flat=True)
    return b"".join(bytes(c) for c in chunks)


def report_rows(job: ImportJob) -> list[list[str]]:
    with import_job_report_open(job_id=job.pk, actor="alice") as f:
        return list(csv.reader(io.StringIO(f.read().decode("utf-8"))))


def test_txt_upload_runs_with_counts_and_a_report_without_key_text(make_product):
    # given: new keys, a key already stored, one repeated in the file, and invalid lines
    product = make_product()
    (stored,) = add_keys(product, ["OLD-KEY"])
    data = "A-1\nOLD-KEY\n\nA-2\nA-1\n" + "X" * 1100 + "\n中文-3\nbad\x01ctl\n"
    job = upload(product, data.encode("utf-8") + b"\xff\xfe\n", ip="10.0.0.5")
    # when
    assert job.status == "queued" and stored_file(job.upload_id).startswith(b"A-1\nOLD-KEY\n")
    assert b"A-1" not in raw_rows(job.upload_id) and b"OLD-KEY" not in raw_rows(job.upload_id)  # sealed in the database
    job = import_job_run(job_id=job.pk)
    # then
    assert (job.status, job.imported, job.duplicates, job.invalid, job.blank) == ("done", 3, 2, 3, 1)
    assert job.lines_done == 9 and job.bytes_done == job.bytes_total
    assert stored_keys(product, "available") == ["OLD-KEY", "A-1", "A-2", "中文-3"]
    assert report_rows(job) == [
        ["line", "problem", "detail"],
        ["2", "already stored", f"key #{stored.pk}"],
        ["5", "duplicate in the file", "line 1"],
        ["6", "line longer than 1024 characters", ""],
        ["8", "contains control character U+0001", ""],
        ["9", "not valid UTF-8 (save the file as UTF-8)", ""],
    ]
    assert job.upload_id is None and ImportFile.objects.count() == 1, "the plaintext upload must be deleted once imported"
    assert list(imports_dir().iterdir()) == [], "the worker's spool of the upload must be deleted too"
    report_text = stored_file(job.report_id).decode("utf-8")
    assert "A-1" not in report_text and "OLD-KEY" not in report_text
    audits = dict(AuditLog.objects.values_list("action", "ip"))
    assert audits["keys.import_upload"] == "10.0.0.5" and audits["keys.import"] == "10.0.0.5"
    assert audits["keys.import_report"] == ""


@pytest.mark.parametrize("column", ["code", "CODE", 2, "2"])
def test_csv_column_by_name_or_number(make_product, column):
    # given
    product = make_product()
    data = 'sku,code,note\nA,K-1,first\nB,"K,2",x\n\nC\nD,K-1,again\n'.encode()
    # when
    job = import_job_run(job_id=upload(product, data, filename="k.csv", fmt="csv", column=column).pk)
    # then
    assert (job.status, job.imported, job.duplicates, job.invalid, job.blank) == ("done", 2, 1, 1, 1)
    assert stored_keys(product) == ["K-1", "K,2"]
    assert report_rows(job)[1:] == [["5", "the row has 1 column(s); the keys are in column 2", ""],
                                    ["6", "duplicate in the file", "line 2"]]


@pytest.mark.parametrize(("column", "message"), [
    ("serial", "column 'serial' is not in the CSV header; its columns are 'sku', 'code'"),
    (3, "column 3: the CSV header has 2 column(s)"),
    (None, "choose the CSV column that holds the keys"),
])
def test_a_bad_csv_column_is_refused_at_upload(make_product, column, message):
    product = make_product()
    with pytest.raises(BadInput, match=message.replace("(", r"\(").replace(")", r"\)")):
        upload(product, b"sku,code\nA,K-1\n", filename="k.csv", fmt="csv", column=column)
    assert not ImportJob.objects.exists()
    assert not ImportFile.objects.exists() and not ImportFileChunk.objects.exists()


def test_an_oversized_upload_is_refused_and_nothing_is_kept(make_product, settings):
    # given
    settings.KAMI_IMPORT_MAX_BYTES = 1000
    product = make_product()
    chunks = (b"K-%04d\n" % i for i in range(500))  # ~3.5 kB, arriving as chunks like an upload
    # when / then
    with pytest.raises(BadInput, match=r"keys\.txt is larger than 0 MiB \(KAMI_IMPORT_MAX_BYTES\): split it"):
        import_job_create(product=product, stream=chunks, filename="../../keys.txt", actor="alice")
    assert not ImportJob.objects.exists() and not ImportFile.objects.exists() and not ImportFileChunk.objects.exists()


def test_empty_upload_and_unknown_format_are_refused(make_product):
    product = make_product()
    with pytest.raises(BadInput, match="empty"):
        upload(product, b"")
    with pytest.raises(BadInput, match="choose txt"):
        upload(product, b"K\n", fmt="xlsx")


def test_paste_is_a_job_too(make_product):
    product = make_product()
    job = import_job_create_from_text(product=product, text="P-1\r\nP-2\r\n", actor="bob", ip="10.1.1.1")
    assert (job.filename, job.fmt, job.actor) == ("pasted.txt", "txt", "bob")
    assert import_job_run(job_id=job.pk).imported == 2


def test_progress_moves_chunk_by_chunk(make_product, monkeypatch):
    # given: a small chunk size, and the progress read after every chunk
    product = make_product()
    job = upload(product, b"".join(b"PROG-%05d\n" % i for i in range(1000)))
    seen = []
    import kami.stock.jobs as jobs

    real = jobs._checkpoint

    def spy(job, owner, report, *, report_bytes):
        real(job, owner, report, report_bytes=report_bytes)
        seen.append(import_job_progress(ImportJob.objects.get(pk=job.pk))["percent"])

    monkeypatch.setattr(jobs, "_checkpoint", spy)
    monkeypatch.setattr(jobs, "keys_import_into", _with_batch_size(jobs.keys_import_into, 100))
    assert import_job_progress(job)["percent"] == 0
    # when
    job = import_job_run(job_id=job.pk)
    # then
    assert seen == sorted(seen) and len(set(seen)) >= 9 and seen[-1] == 99
    progress = import_job_progress(job)
    assert (progress["percent"], progress["status"], progress["imported"], progress["report_ready"]) == (100, "done", 1000, True)


def _with_batch_size(real, size):
    def run(**kwargs):
        return real(**{**kwargs, "batch_size": size})
    return run


def test_a_job_whose_worker_died_resumes_at_its_checkpoint(make_product, monkeypatch):
    # given: a run that dies after its third chunk was stored but before that chunk's checkpoint
    product = make_product()
    lines = [f"RES-{i:04d}" for i in range(1000)] + ["RES-0005", ""]
    lines.insert(49, "bad\x01a")  # line 50: reported before the last checkpoint
    lines.insert(249, "bad\x01b")  # line 250: reported by the dead run past its checkpoint
    job = upload(product, "\n".join(lines).encode() + b"\n")
    import kami.stock.jobs as jobs

    monkeypatch.setattr(jobs, "keys_import_into", _with_batch_size(jobs.keys_import_into, 100))
    real, calls = jobs._checkpoint, []

    def dies(job, owner, report, *, report_bytes):
        calls.append(report.lines)
        if len(calls) == 3:
            raise SystemExit("worker killed")
        real(job, owner, report, report_bytes=report_bytes)

    monkeypatch.setattr(jobs, "_checkpoint", dies)
    claimed = import_job_claim_due(owner="dead-worker")
    with pytest.raises(SystemExit):
        import_job_run(job_id=claimed.pk, owner="dead-worker")
    stored = Key.objects.filter(product=product).count()
    assert 250 < stored < 300, stored  # three chunks stored, two of them checkpointed
    # when: its lease runs out and another worker claims the job and runs it
    monkeypatch.setattr(jobs, "_checkpoint", real)
    assert import_job_claim_due(owner="other") is None  # the lease still holds
    ImportJob.objects.filter(pk=job.pk).update(lease_until=clock.now())
    assert import_job_claim_due(owner="other").pk == job.pk
    job = import_job_run(job_id=job.pk, owner="other")
    # then: every key once, and the counts and report as if the run had never died
    assert (job.status, job.runs, job.imported, job.duplicates, job.invalid, job.blank) == ("done", 2, 1000, 1, 2, 1)
    assert Key.objects.filter(product=product).count() == 1000
    original = Key.objects.get(product=product, fingerprint=key_fingerprint("RES-0005"))
    assert report_rows(job)[1:] == [["50", "contains control character U+0001", ""],
                                    ["250", "contains control character U+0001", ""],
                                    ["1003", "duplicate in the file", f"key #{original.pk}"]]


def test_a_running_job_is_not_run_twice_and_a_done_one_not_again(make_product):
    product = make_product()
    job = upload(product, b"ONE\n")
    claimed = import_job_claim_due(owner="w1")
    assert claimed.pk == job.pk and import_job_claim_due(owner="w2") is None
    with pytest.raises(Conflict, match="is being run by w1"):
        import_job_run(job_id=job.pk)
    done = import_job_run(job_id=job.pk, owner="w1")
    assert done.status == "done" and import_job_run(job_id=job.pk).status == "done"
    assert Key.objects.filter(product=product).count() == 1


def test_report_of_an_unfinished_job_is_not_served(make_product):
    job = upload(make_product(), b"K-1\n")
    with pytest.raises(Conflict, match="ready when the import finishes"):
        import_job_report_open(job_id=job.pk, actor="alice")


def test_a_missing_upload_fails_the_job_with_a_clear_error(make_product):
    job = upload(make_product(), b"K-1\n")
    file_delete(job.upload_id)
    job = import_job_run(job_id=job.pk)
    assert job.status == "failed" and "upload it again" in job.error


def test_a_django_upload_is_copied_by_its_chunks(make_product):
    # given: what a back-office form hands over
    product = make_product()
    uploaded = SimpleUploadedFile("stock.txt", b"UP-1\nUP-2\n", content_type="text/plain")
    # when
    job = import_job_create(product=product, stream=uploaded, filename=uploaded.name, actor="alice")
    # then
    assert stored_file(job.upload_id) == b"UP-1\nUP-2\n"
    assert import_job_run(job_id=job.pk).imported == 2


def test_a_dead_runs_spool_is_cleared_when_its_job_runs_again(make_product):
    # given: the spool a killed worker left behind (plaintext keys on its disk), and an old stray one
    job = upload(make_product(), b"K-1\n")
    dead = imports_dir() / f"{job.pk}-0123456789abcdef.spool"
    dead.write_bytes(b"K-1\n")
    stray = imports_dir() / "999999-fedcba9876543210.spool"
    stray.write_bytes(b"OLD\n")
    os.utime(stray, (clock.now().timestamp() - 2 * 86_400,) * 2)
    # when
    assert import_job_run(job_id=job.pk).status == "done"
    # then
    assert list(imports_dir().iterdir()) == []
