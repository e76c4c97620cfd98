"""Key files imported in the background (scope `stock`), through the back office's upload path:

    POST /merchant/stock/{slug}/imports   a multipart upload → 202, Location: /api/v1/merchant/imports/{id}
    GET  /merchant/imports/{id}           the job's progress and counts (poll it)
    GET  /merchant/imports/{id}/report    the finished job's report, line,problem,detail (never key text)

The file streams into the database (kami.stock.jobs.import_job_create: size-limited, a CSV's column
checked at once); the worker runs the job, then fulfils orders waiting for stock
(kami.fulfilment.imports). A JSON array of keys is imported at once by POST …/keys instead.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path as FilePath
from typing import Literal

from django.http import FileResponse
from django.urls import reverse
from ninja import File, Form, Header, Path, Router, UploadedFile

from kami.api.merchant.auth import STOCK
from kami.api.merchant.idempotency import HEADER_RULES, idempotent
from kami.api.merchant.problems import Problem
from kami.api.merchant.schemas import READ_ERRORS, TEXT, WRITE_ERRORS, ImportJobOut, errors, slug_path
from kami.catalog.selectors import product_get
from kami.core.net import client_ip
from kami.stock import jobs
from kami.stock.models import ImportJob

router = Router(tags=["stock"])
JOB_ID = {"ge": 1, "le": 2**63 - 1, "description": "the import job's id (the `id` of the upload's answer)"}
REPORT_DOC = {"description": "the report as CSV: line,problem,detail (never key text)",
              "content": {"text/csv": {"schema": {"type": "string"}}}}


@router.post("/stock/{slug}/imports", auth=STOCK, response={202: ImportJobOut, **WRITE_ERRORS},
             summary="Upload a key file: imported in the background; poll the Location for its progress")
def import_upload(request, slug: str = slug_path(), file: UploadedFile = File(..., description="the key file"),
                  format: Literal["auto", "txt", "csv"] = Form(  # noqa: A002 (the form field's public name)
                      "auto", description="txt: one key per line; csv: one column; auto: by the file's extension"),
                  column: str = Form("", max_length=200, pattern=TEXT,
                                     description="csv: the column's header name or its number, counting from 1"),
                  *, idempotency_key: str = Header(..., alias="Idempotency-Key", **HEADER_RULES)):
    def run():
        product = product_get(slug=slug)
        if file.size > jobs.max_bytes():
            raise Problem(413, "too-large", f"{file.name} is {file.size:,} bytes, over KAMI_IMPORT_MAX_BYTES "
                                            f"({jobs.max_bytes():,}): split it into smaller files")
        fmt = _format_of(format, file.name)
        job = jobs.import_job_create(product=product, stream=file, filename=file.name or "upload", fmt=fmt,
                                     column=(column.strip() or None) if fmt == "csv" else None,
                                     actor=request.auth.actor, ip=client_ip(request) or "")
        return 202, job_out(job)

    try:
        response = idempotent(request, key=idempotency_key, run=run, body=_upload_digest(file, format, column))
    finally:
        file.close()  # a temporary file is deleted now, not at garbage collection
    if response.status_code == 202:  # the first answer and its repeats alike
        response["Location"] = _status_path(_job_id_of(response))
    return response


@router.get("/imports/{job_id}", auth=STOCK, url_name="import_job", response={200: ImportJobOut, **READ_ERRORS, **errors(404)},
            summary="An import job's progress and counts")
def import_job(request, job_id: int = Path(..., **JOB_ID)):
    return job_out(_job(job_id))


@router.get("/imports/{job_id}/report", auth=STOCK, response={**READ_ERRORS, **errors(404, 409)},
            openapi_extra={"responses": {"200": REPORT_DOC}},
            summary="A finished import job's report (CSV; each download is audited)")
def import_job_report(request, job_id: int = Path(..., **JOB_ID)):
    handle = jobs.import_job_report_open(job_id=job_id, actor=request.auth.actor, ip=client_ip(request) or "")
    return FileResponse(handle, as_attachment=True, filename=f"import-{job_id}-report.csv",
                        content_type="text/csv; charset=utf-8")


def job_out(job: ImportJob) -> dict:
    """The back office's progress, as JSON text (times in ISO 8601), with the job's addresses."""
    progress = jobs.import_job_progress(job)
    for name in ("created_at", "started_at", "finished_at"):
        progress[name] = progress[name].isoformat() if progress[name] else None
    return {"id": job.pk, "product": job.product.slug, **progress, "status_url": _status_path(job.pk),
            "report_url": _status_path(job.pk) + "/report" if progress["report_ready"] else None}


def _job(job_id: int) -> ImportJob:
    job = ImportJob.objects.select_related("product").filter(pk=job_id).first()
    if job is None:
        raise Problem(404, "not-found", f"no import job #{job_id}; the upload's answer gives its id")
    return job


def _status_path(job_id: int) -> str:
    return reverse("merchant-api:import_job", kwargs={"job_id": job_id})


def _job_id_of(response) -> int:
    return int(json.loads(response.content)["id"])


def _format_of(chosen: str, filename: str) -> str:
    if chosen != "auto":
        return chosen
    return "csv" if FilePath(filename or "").suffix.lower() == ".csv" else "txt"


def _upload_digest(file: UploadedFile, fmt: str, column: str) -> bytes:
    """What makes two uploads the same request: the file's bytes, its name and the form's fields."""
    digest = hashlib.sha256()
    for chunk in file.chunks():
        digest.update(chunk)
    return f"{digest.hexdigest()} {file.name}\n{fmt}\n{column}".encode()
