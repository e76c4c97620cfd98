"""Background key imports from an uploaded file or a paste (the back office's upload).

    create  the upload is copied in chunks into the database (kami.stock.jobfiles: size-limited,
            never held in memory, no shared directory between web and worker); the job row is queued
    claim   a worker leases one due job (SKIP LOCKED): queued, or running with a lease run out
    run     the upload is spooled to a private file in the worker's own data dir and streams
            through the one import loop (kami.stock.importer); after every chunk the report's
            new lines (in the database too), the counts, the position and the report's size go
            on the job row: they are the progress bar and the checkpoint a resumed run starts from
    end     done, or failed with the error; the upload (plaintext keys) and the spool are
            deleted either way

A resumed run seeks to the checkpoint and cuts the report back to it. Keys the dead run stored
after its checkpoint are met again and counted as imported (`ImportReport.carried`); the
fingerprint constraint stores nothing twice. Stock never backfills orders: the runner in
kami.fulfilment.imports does "run the job, then the restock backfill".
"""
from __future__ import annotations

import csv
import io
import logging
import secrets
import time
from collections.abc import Callable, Iterable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import BinaryIO

from django.conf import settings
from django.db import transaction
from django.db.models import F

from kami.audit.services import audit_record
from kami.catalog.models import Product
from kami.core import clock
from kami.core.datadir import data_dir
from kami.core.errors import BadInput, Conflict, KamiError, NotFound, storage_full, storage_full_raised
from kami.stock.csvsource import csv_column_index, csv_column_reader, csv_header
from kami.stock.importer import batch_finish, batch_start, keys_import_into
from kami.stock.jobfiles import (file_create, file_delete, file_exists, file_open, file_spool, file_truncate,
                                 file_write, files_orphaned_delete)
from kami.stock.models import ImportBatch, ImportJob, Key
from kami.stock.report import ImportReport

log = logging.getLogger("kami.stock.jobs")
S = ImportJob.Status
COPY_CHUNK = 1024 * 1024
REPORT_HEADER = b"line,problem,detail\n"
MAX_RUNS = 3  # an unexpected error releases the job for another try, this many runs in all


class LeaseLost(Exception):
    """Another worker took the job over (ours ran past its lease): stop without touching it."""


class Stopped(Exception):
    """The worker is shutting down: the job goes back to the queue at its checkpoint."""


def imports_dir() -> Path:
    """Where a worker spools the upload it runs: its own data dir, private, emptied after each run."""
    path = data_dir() / "imports"
    path.mkdir(mode=0o700, exist_ok=True)
    return path


def max_bytes() -> int:
    return int(settings.KAMI_IMPORT_MAX_BYTES)


def lease_seconds() -> int:
    return int(settings.KAMI_IMPORT_LEASE_SECONDS)


def import_job_create(*, product: Product, stream, filename: str, fmt: str = "txt", column: str | int | None = None,
                      actor: str, ip: str = "") -> ImportJob:
    """Queue an import of `stream` (a Django UploadedFile, a binary file, or an iterable of
    bytes chunks). A CSV's header is checked now, so a wrong column is refused at once."""
    if fmt not in ImportJob.Format.values:
        raise BadInput(f"format {fmt!r}: choose txt (one key per line) or csv (one column of a CSV file)")
    name = Path(filename or "upload").name[:255] or "upload"
    with storage_full_raised():  # a full disk: StorageFull naming where, and no job, no file left behind
        return _job_create(product=product, stream=stream, name=name, fmt=fmt, column=column, actor=actor, ip=ip)


def _job_create(*, product: Product, stream, name: str, fmt: str, column, actor: str, ip: str) -> ImportJob:
    files_orphaned_delete()
    upload = file_create()
    try:
        size = _receive(_chunks_of(stream), name, upload.pk)
        if fmt == ImportJob.Format.CSV:
            with file_open(upload.pk) as f:
                csv_column_index(csv_header(f), column)
        with transaction.atomic():  # workers see the row only once its file is in place, with its (empty) report
            job = ImportJob.objects.create(
                product=product, filename=name, fmt=fmt, column=str(column).strip() if fmt == "csv" else "",
                actor=actor[:150], ip=ip[:45], bytes_total=size, created_at=clock.now(), upload=upload,
                report=file_create())
            audit_record(actor=actor, action="keys.import_upload", obj_type="product", obj_id=product.slug, ip=ip,
                         job=job.pk, filename=name, format=fmt, bytes=size)
    except BaseException:
        _quietly_delete(upload.pk)
        raise
    return job


def _quietly_delete(file_id: int) -> None:
    """Refused or failed upload: its chunks go. When even that fails (a full disk), the orphan sweep does it later."""
    try:
        file_delete(file_id)
    except Exception:  # noqa: BLE001 — the original error is the one to report
        log.warning("could not delete the chunks of a refused upload (import file #%s): swept later", file_id)


def import_job_create_from_text(*, product: Product, text: str, actor: str, ip: str = "") -> ImportJob:
    """Queue an import of pasted text, one key per line."""
    return import_job_create(product=product, stream=io.BytesIO(text.encode("utf-8")), filename="pasted.txt",
                             fmt="txt", actor=actor, ip=ip)


def _chunks_of(stream) -> Iterator[bytes]:
    if hasattr(stream, "chunks"):
        yield from stream.chunks()
    elif hasattr(stream, "read"):
        while block := stream.read(COPY_CHUNK):
            yield block
    else:
        yield from stream


def _receive(chunks: Iterable[bytes], name: str, file_id: int) -> int:
    """Copy the chunks into the database file `file_id`; refuse past KAMI_IMPORT_MAX_BYTES."""
    limit = max_bytes()

    def bounded() -> Iterator[bytes]:
        size = 0
        for block in chunks:
            size += len(block)
            if size > limit:
                raise BadInput(f"{name} is larger than {limit / 2**20:,.0f} MiB (KAMI_IMPORT_MAX_BYTES): "
                               "split it into smaller files, or raise the limit")
            yield block

    size = file_write(file_id, bounded(), sealed=True)  # plaintext keys: sealed like stored keys
    if not size:
        raise BadInput(f"{name} is empty: there are no keys to import")
    return size


def import_job_claim_due(*, owner: str) -> ImportJob | None:
    """Lease one due job to `owner`: a running job whose lease ran out (its worker died) first,
    then the oldest queued one. None when there is nothing to do."""
    now = clock.now()
    with transaction.atomic():  # lock one candidate (others' skipped) only while it is leased
        rows = ImportJob.objects.select_for_update(skip_locked=True).order_by("id")
        job = rows.filter(status=S.RUNNING, lease_until__lt=now).first() or rows.filter(status=S.QUEUED).first()
        if job is None or not _lease_take(job, owner, now):
            return None
    job.refresh_from_db()
    return job


def _lease_take(job: ImportJob, owner: str, now) -> bool:
    """Conditional on the row being as we read it: two claimers never both win (also on SQLite)."""
    return bool(ImportJob.objects.filter(pk=job.pk, status=job.status, lease_until=job.lease_until).update(
        status=S.RUNNING, lease_owner=owner[:100], lease_until=now + timedelta(seconds=lease_seconds()),
        runs=F("runs") + 1, started_at=job.started_at or now))


def import_job_run(*, job_id: int, owner: str | None = None, stop: Callable[[], bool] | None = None) -> ImportJob:
    """Run one job to its end and return it. Without `owner` the job is leased here first (a
    job that is done or failed is returned as it is; one another worker holds is refused)."""
    if owner is None:
        owner = f"run-{secrets.token_hex(6)}"
        job = ImportJob.objects.filter(pk=job_id).first()
        if job is None:
            raise NotFound(f"no import job #{job_id}")
        if job.status in (S.DONE, S.FAILED):
            return job
        live = job.status == S.RUNNING and job.lease_until and job.lease_until >= clock.now()
        if live or not _lease_take(job, owner, clock.now()):
            raise Conflict(f"import job #{job_id} is being run by {job.lease_owner or 'another worker'}")
    job = ImportJob.objects.select_related("product", "batch").get(pk=job_id)
    if job.lease_owner != owner or job.status != S.RUNNING:
        raise Conflict(f"import job #{job_id} is not leased to {owner}")
    try:
        _run(job, owner, stop)
    except LeaseLost:
        log.warning("import job #%s: lease lost to another worker; stopped", job.pk)
    except Stopped:
        ImportJob.objects.filter(pk=job.pk, lease_owner=owner).update(status=S.QUEUED, lease_owner="", lease_until=None)
    job.refresh_from_db()
    return job


def _run(job: ImportJob, owner: str, stop: Callable[[], bool] | None) -> None:
    batch = job.batch or _batch_for(job, owner)
    if job.report_id is None:  # queued before its files moved into the database (migration stock.0008)
        _report_attach(job, owner)
    report = _report_at_checkpoint(job, batch)
    spool = None
    try:
        spool = file_spool(job.upload_id, _spools_cleared(job), prefix=f"{job.pk}-")  # FileNotFoundError: no upload
        with spool.open("rb") as stream, _ReportFile(job) as out:
            reader = None
            if job.fmt == ImportJob.Format.CSV:
                reader = csv_column_reader(csv_column_index(csv_header(stream), job.column))
            stream.seek(job.bytes_done)
            report.on_problem = out.add

            def progress(current: ImportReport) -> None:
                _checkpoint(job, owner, current, report_bytes=out.flush())
                if stop is not None and stop():
                    raise Stopped()

            keys_import_into(batch=batch, report=report, stream=stream, reader=reader, on_progress=progress)
    except (LeaseLost, Stopped):
        raise
    except Exception as exc:  # noqa: BLE001 — every failure ends on the job row, for the merchant to read
        _failed(job, owner, batch, report, exc)
        return
    finally:
        if spool is not None:
            spool.unlink(missing_ok=True)  # plaintext keys: never left on the worker's disk
    batch_finish(batch=batch, report=report, action="keys.import", ip=job.ip, job=job.pk, filename=job.filename)
    done = ImportJob.objects.filter(pk=job.pk, lease_owner=owner, status=S.RUNNING).update(
        status=S.DONE, finished_at=clock.now(), lease_owner="", lease_until=None, error="", **_counts(report))
    if done:
        _upload_delete(job)


def _spools_cleared(job: ImportJob) -> Path:
    """The spool folder, without what dead runs left in it (plaintext keys): this job's earlier
    spools (we hold its lease, so their run is over) and any spool a day old."""
    folder, day_ago = imports_dir(), time.time() - 86_400
    for path in folder.glob("*.spool"):
        try:
            if path.name.startswith(f"{job.pk}-") or path.stat().st_mtime < day_ago:
                path.unlink()
        except FileNotFoundError:
            pass  # another worker of this data dir cleared it first
    return folder


def _upload_delete(job: ImportJob) -> None:
    """The job has ended: its upload (plaintext keys) goes from the database."""
    ImportJob.objects.filter(pk=job.pk).update(upload=None)
    file_delete(job.upload_id)


def _batch_for(job: ImportJob, owner: str) -> ImportBatch:
    batch, _ = batch_start(product=job.product, source=f"upload {job.filename} (job #{job.pk})", actor=job.actor)
    if not ImportJob.objects.filter(pk=job.pk, lease_owner=owner).update(batch=batch):
        raise LeaseLost()
    return batch


def _report_attach(job: ImportJob, owner: str) -> None:
    job.report = file_create()
    if not ImportJob.objects.filter(pk=job.pk, lease_owner=owner).update(report=job.report):
        file_delete(job.report_id)
        raise LeaseLost()
    job.report_bytes = 0  # no report to continue: it starts again (with its header)


def _report_at_checkpoint(job: ImportJob, batch: ImportBatch) -> ImportReport:
    """The counts as the last checkpoint left them, and the keys stored after it (a run that
    died between storing a chunk and writing its checkpoint): at most one chunk's worth.
    Counted once, here: sound because the dead run's lease has run out (minutes), so the
    database has long ended its session and settled a COMMIT it sent just before dying."""
    report = ImportReport(batch_id=batch.pk, lines=job.lines_done, bytes_read=job.bytes_done, imported=job.imported,
                          blank=job.blank, invalid=job.invalid, duplicate_in_file=job.duplicates_in_file,
                          duplicate_stored=job.duplicates - job.duplicates_in_file)
    beyond = Key.objects.filter(batch=batch).count() - job.imported
    if beyond > 0:
        latest = Key.objects.filter(batch=batch).order_by("-id").values_list("fingerprint", flat=True)
        report.carried = set(latest[:beyond])
    return report


def _counts(report: ImportReport) -> dict:
    return {"bytes_done": report.bytes_read, "lines_done": report.lines, "imported": report.imported,
            "duplicates": report.duplicates, "duplicates_in_file": report.duplicate_in_file,
            "invalid": report.invalid, "blank": report.blank}


def _checkpoint(job: ImportJob, owner: str, report: ImportReport, *, report_bytes: int) -> None:
    """One UPDATE (its own short transaction): progress, checkpoint and a renewed lease."""
    lease = clock.now() + timedelta(seconds=lease_seconds())
    if not ImportJob.objects.filter(pk=job.pk, lease_owner=owner, status=S.RUNNING).update(
            report_bytes=report_bytes, lease_until=lease, **_counts(report)):
        raise LeaseLost()


def _failed(job: ImportJob, owner: str, batch: ImportBatch, report: ImportReport, exc: Exception) -> None:
    """A merchant-readable error on the job. An unexpected one (database hiccup) sends the job
    back to the queue for another run at its checkpoint, up to MAX_RUNS runs."""
    if isinstance(exc, FileNotFoundError) and not exc.filename:  # no upload in the database (not a spool file)
        error = f"the uploaded file {job.filename} is gone from the database: upload it again"
    elif isinstance(exc, KamiError):
        error = str(exc)
    else:
        full = storage_full(exc)  # a full disk says where and what to do; retried like any unexpected error
        error = str(full) if full is not None else f"{type(exc).__name__}: {exc}"
        log.warning("import job #%s run %s failed", job.pk, job.runs, exc_info=True)
        if job.runs < MAX_RUNS:
            ImportJob.objects.filter(pk=job.pk, lease_owner=owner).update(
                status=S.QUEUED, lease_owner="", lease_until=None, error=error[:2000])
            return
    if ImportJob.objects.filter(pk=job.pk, lease_owner=owner).update(
            status=S.FAILED, error=error[:2000], finished_at=clock.now(), lease_owner="", lease_until=None):
        _upload_delete(job)
        batch_finish(batch=batch, report=report, action="keys.import", ip=job.ip, job=job.pk,
                     filename=job.filename, error=error[:300])


class _ReportFile:
    """The job's report, `line,problem,detail` (never key text), in the database (jobfiles).
    Problems are held until the chunk is written, then appended sorted by line: all lines read
    before lie in that range. Each flush appends whole rows, so the checkpoint's size is always
    a row boundary to cut back to."""

    def __init__(self, job: ImportJob):
        self.file_id, self.resume_at = job.report_id, job.report_bytes
        self.pending: list[tuple[int, str, str]] = []

    def __enter__(self) -> "_ReportFile":
        file_truncate(self.file_id, self.resume_at)  # what a dead run wrote past its checkpoint (all, if none)
        self.size = self.resume_at or file_write(self.file_id, [REPORT_HEADER])
        return self

    def __exit__(self, *exc) -> None:
        pass

    def add(self, line: int, problem: str, detail: str) -> None:
        self.pending.append((line, problem, detail))

    def flush(self) -> int:
        """Write what is pending; the file's size, for the checkpoint."""
        if self.pending:
            self.pending.sort(key=lambda p: p[0])
            text = io.StringIO()
            csv.writer(text, lineterminator="\n").writerows(self.pending)
            self.size = file_write(self.file_id, [text.getvalue().encode("utf-8")], at=self.size)
            self.pending = []
        return self.size


def import_job_progress(job: ImportJob) -> dict:
    """What the progress bar shows. `percent` follows the bytes read; 100 only once done."""
    if job.status == S.DONE:
        percent = 100
    else:
        percent = min(99, job.bytes_done * 100 // job.bytes_total) if job.bytes_total else 0
    return {"id": job.pk, "status": job.status, "percent": percent, "filename": job.filename, "fmt": job.fmt,
            "bytes_total": job.bytes_total, "bytes_done": job.bytes_done, "lines_done": job.lines_done,
            "imported": job.imported, "duplicates": job.duplicates, "invalid": job.invalid, "blank": job.blank,
            "error": job.error, "report_ready": job.status in (S.DONE, S.FAILED) and file_exists(job.report_id),
            "created_at": job.created_at, "started_at": job.started_at, "finished_at": job.finished_at}


def import_job_report_open(*, job_id: int, actor: str, ip: str = "") -> BinaryIO:
    """The finished job's report, opened for download from the database (the caller closes it); audited."""
    job = ImportJob.objects.select_related("product").filter(pk=job_id).first()
    if job is None:
        raise NotFound(f"no import job #{job_id}")
    if job.status not in (S.DONE, S.FAILED):
        raise Conflict(f"import job #{job_id} is {job.status}: its report is ready when the import finishes")
    if not file_exists(job.report_id):
        raise NotFound(f"the report of import job #{job_id} is missing from the database")
    handle = file_open(job.report_id)
    audit_record(actor=actor, action="keys.import_report", obj_type="import_job", obj_id=job.pk, ip=ip,
                 product=job.product.slug, filename=job.filename)
    return handle
