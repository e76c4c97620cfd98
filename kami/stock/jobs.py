"""Background key imports from an uploaded file or a paste (the back office's upload).

    create  the upload is copied in chunks to <data dir>/imports/<id>.upload (size-limited,
            never held in memory); the job row is queued
    claim   a worker leases one due job (SKIP LOCKED): queued, or running with a lease run out
    run     the file streams through the one import loop (kami.stock.importer); after every
            chunk the counts, the position and the report file's size go on the job row:
            they are the progress bar and the checkpoint a resumed run starts from
    end     done, or failed with the error; the upload (plaintext keys) is deleted either way

A resumed run seeks to the checkpoint and cuts the report back to it. Keys the dead run stored
after its checkpoint are met again and counted as imported (`ImportReport.carried`); the
fingerprint constraint stores nothing twice. Stock never backfills orders: the runner in
kami.fulfilment.imports does "run the job, then the restock backfill".
"""
from __future__ import annotations

import csv
import io
import logging
import os
import secrets
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
    path = data_dir() / "imports"
    path.mkdir(mode=0o700, exist_ok=True)
    return path


def upload_path(job_id: int) -> Path:
    return imports_dir() / f"{job_id}.upload"


def report_path(job_id: int) -> Path:
    return imports_dir() / f"{job_id}.report.csv"


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
    temp, size = _receive(_chunks_of(stream), name)
    job = None
    try:
        if fmt == ImportJob.Format.CSV:
            with temp.open("rb") as f:
                csv_column_index(csv_header(f), column)
        with transaction.atomic():  # workers see the row only once its file is in place
            job = ImportJob.objects.create(
                product=product, filename=name, fmt=fmt, column=str(column).strip() if fmt == "csv" else "",
                actor=actor[:150], ip=ip[:45], bytes_total=size, created_at=clock.now())
            job.report_path = str(report_path(job.pk))
            job.save(update_fields=["report_path"])
            os.replace(temp, upload_path(job.pk))
            audit_record(actor=actor, action="keys.import_upload", obj_type="product", obj_id=product.slug, ip=ip,
                         job=job.pk, filename=name, format=fmt, bytes=size)
    except BaseException:
        temp.unlink(missing_ok=True)
        if job is not None and job.pk:
            upload_path(job.pk).unlink(missing_ok=True)
        raise
    return job


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


def _receive(chunks: Iterable[bytes], name: str) -> tuple[Path, int]:
    """Copy the chunks to a private temporary file; refuse past KAMI_IMPORT_MAX_BYTES."""
    limit = max_bytes()
    temp = imports_dir() / f"incoming-{secrets.token_hex(8)}.part"
    size = 0
    with os.fdopen(os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb") as out:
        try:
            for block in chunks:
                size += len(block)
                if size > limit:
                    raise BadInput(f"{name} is larger than {limit / 2**20:,.0f} MiB (KAMI_IMPORT_MAX_BYTES): "
                                   "split it into smaller files, or raise the limit")
                out.write(block)
            out.flush()  # a full disk shows here at the latest, inside the clean-up (not at close)
        except BaseException:
            try:
                out.close()
            except OSError:
                pass  # its buffer could not be written either (a full disk): the file goes anyway
            temp.unlink(missing_ok=True)
            raise
    if not size:
        temp.unlink(missing_ok=True)
        raise BadInput(f"{name} is empty: there are no keys to import")
    return temp, size


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
    report = _report_at_checkpoint(job, batch)
    try:
        with upload_path(job.pk).open("rb") as stream, _ReportFile(job) as out:
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
    batch_finish(batch=batch, report=report, action="keys.import", ip=job.ip, job=job.pk, filename=job.filename)
    done = ImportJob.objects.filter(pk=job.pk, lease_owner=owner, status=S.RUNNING).update(
        status=S.DONE, finished_at=clock.now(), lease_owner="", lease_until=None, error="", **_counts(report))
    if done:
        upload_path(job.pk).unlink(missing_ok=True)


def _batch_for(job: ImportJob, owner: str) -> ImportBatch:
    batch, _ = batch_start(product=job.product, source=f"upload {job.filename} (job #{job.pk})", actor=job.actor)
    if not ImportJob.objects.filter(pk=job.pk, lease_owner=owner).update(batch=batch):
        raise LeaseLost()
    return batch


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
    if isinstance(exc, FileNotFoundError):
        error = f"the uploaded file {job.filename} is gone from {imports_dir()}: upload it again"
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
        upload_path(job.pk).unlink(missing_ok=True)
        batch_finish(batch=batch, report=report, action="keys.import", ip=job.ip, job=job.pk,
                     filename=job.filename, error=error[:300])


class _ReportFile:
    """The job's report, `line,problem,detail` (never key text). Problems are held until the
    chunk is written, then appended sorted by line: all lines read before lie in that range."""

    def __init__(self, job: ImportJob):
        self.path, self.resume_at = Path(job.report_path or report_path(job.pk)), job.report_bytes
        self.pending: list[tuple[int, str, str]] = []

    def __enter__(self) -> "_ReportFile":
        if self.resume_at and self.path.exists():
            self.out = self.path.open("r+b")
            self.out.truncate(self.resume_at)  # what a dead run wrote past its checkpoint
            self.out.seek(self.resume_at)
        else:
            self.out = os.fdopen(os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb")
            self.out.write(REPORT_HEADER)
        return self

    def __exit__(self, *exc) -> None:
        self.out.close()

    def add(self, line: int, problem: str, detail: str) -> None:
        self.pending.append((line, problem, detail))

    def flush(self) -> int:
        """Write what is pending; the file's size, for the checkpoint."""
        if self.pending:
            self.pending.sort(key=lambda p: p[0])
            text = io.StringIO()
            csv.writer(text, lineterminator="\n").writerows(self.pending)
            self.out.write(text.getvalue().encode("utf-8"))
            self.pending = []
        self.out.flush()
        return self.out.tell()


def import_job_progress(job: ImportJob) -> dict:
    """What the progress bar shows. `percent` follows the bytes read; 100 only once done."""
    if job.status == S.DONE:
        percent = 100
    else:
        percent = min(99, job.bytes_done * 100 // job.bytes_total) if job.bytes_total else 0
    return {"id": job.pk, "status": job.status, "percent": percent, "filename": job.filename, "fmt": job.fmt,
            "bytes_total": job.bytes_total, "bytes_done": job.bytes_done, "lines_done": job.lines_done,
            "imported": job.imported, "duplicates": job.duplicates, "invalid": job.invalid, "blank": job.blank,
            "error": job.error, "report_ready": job.status in (S.DONE, S.FAILED) and Path(job.report_path).is_file(),
            "created_at": job.created_at, "started_at": job.started_at, "finished_at": job.finished_at}


def import_job_report_open(*, job_id: int, actor: str, ip: str = "") -> BinaryIO:
    """The finished job's report file, opened for download (the caller closes it); audited."""
    job = ImportJob.objects.select_related("product").filter(pk=job_id).first()
    if job is None:
        raise NotFound(f"no import job #{job_id}")
    if job.status not in (S.DONE, S.FAILED):
        raise Conflict(f"import job #{job_id} is {job.status}: its report is ready when the import finishes")
    try:
        handle = Path(job.report_path).open("rb")
    except FileNotFoundError:
        raise NotFound(f"the report of import job #{job_id} is missing from {imports_dir()}") from None
    audit_record(actor=actor, action="keys.import_report", obj_type="import_job", obj_id=job.pk, ip=ip,
                 product=job.product.slug, filename=job.filename)
    return handle
