"""Importing keys from the back office: upload (txt, csv with a chosen column) or paste, a job
the worker runs, a progress page and its JSON, the report download (audited), per role."""
from __future__ import annotations

import re

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from kami.audit.models import AuditLog
from kami.fulfilment.imports import import_jobs_run_due
from kami.stock.models import ImportJob
from tests.backoffice.staffing import admin_url
from tests.backoffice.staffing import signed_in as signed_in_as
from tests.stock.helpers import stored_keys

pytestmark = pytest.mark.django_db


def signed_in(role: str, username: str | None = None):
    """A signed-in client that reads the pages in English (messages are checked by text)."""
    client = signed_in_as(role, username)
    client.defaults["HTTP_ACCEPT_LANGUAGE"] = "en"
    return client

KEYS = b"AAAA-0001\nAAAA-0002\nAAAA-0001\n\nBAD\x00LINE\nAAAA-0003\n"


def _upload(client, product, name: str, data: bytes, **fields):
    return client.post(admin_url("keys/import/"), {
        "product": product.pk, "fmt": "auto", "column": "", "text": "", **fields,
        "file": SimpleUploadedFile(name, data)})


def _job_id(response) -> int:
    assert response.status_code == 302, response.content.decode()[:3000]
    return int(re.search(r"/keys/import/(\d+)/$", response["Location"]).group(1))


@pytest.mark.parametrize("role,allowed", [("owner", True), ("operator", True), ("support", False)])
def test_upload_per_role(make_product, role, allowed):
    product = make_product()
    response = _upload(signed_in(role, f"{role}-imp"), product, "keys.txt", KEYS)
    if allowed:
        assert ImportJob.objects.get(pk=_job_id(response)).actor == f"{role}-imp"
    else:
        assert response.status_code == 403 and not ImportJob.objects.exists()


def test_a_small_upload_runs_in_the_worker_and_ends_with_the_report(make_product):
    # given an operator uploads a small text file
    client = signed_in("operator", "oscar")
    product = make_product()
    job_id = _job_id(_upload(client, product, "keys.txt", KEYS))
    # then the job waits for the worker: the page polls (external script) and has a refresh link
    page = client.get(admin_url(f"keys/import/{job_id}/")).content.decode()
    assert 'id="job-progress"' in page and 'id="job-refresh"' in page and "backoffice/keys.js" in page
    assert "<script>" not in page and 'http-equiv="refresh"' not in page
    assert client.get(admin_url(f"keys/import/{job_id}/status.json")).json()["status"] == "queued"
    # when the worker runs it
    assert import_jobs_run_due(limit=1) == 1
    # then the status says done at 100%, and the page shows the summary and the report link
    status = client.get(admin_url(f"keys/import/{job_id}/status.json")).json()
    assert (status["status"], status["percent"], status["imported"], status["duplicates"], status["invalid"]) == (
        "done", 100, 3, 1, 1)
    page = client.get(admin_url(f"keys/import/{job_id}/")).content.decode()
    assert 'id="job-summary"' in page and "backoffice/keys.js" not in page
    assert re.search(r'id="sum-imported">3<', page) and re.search(r'id="sum-invalid">1<', page)
    assert stored_keys(product) == ["AAAA-0001", "AAAA-0002", "AAAA-0003"]
    # and the report names the problem lines (never a key), and its download is on record
    report = client.get(admin_url(f"keys/import/{job_id}/report.csv"))
    body = b"".join(report.streaming_content).decode()
    assert report.status_code == 200 and "attachment" in report["Content-Disposition"]
    assert body.splitlines() == ["line,problem,detail", "3,duplicate in the file,line 1",
                                 "5,contains a NUL byte,"]
    entry = AuditLog.objects.get(action="keys.import_report")
    assert (entry.actor, entry.ip, entry.object_id) == ("oscar", "10.1.1.1", str(job_id))


def test_job_pages_per_role(make_product):
    clients = {role: signed_in(role, f"{role}-job") for role in ("owner", "operator", "support")}
    job_id = _job_id(_upload(clients["owner"], make_product(), "keys.txt", KEYS))
    import_jobs_run_due(limit=1)
    for page in ("", "status.json", "report.csv"):
        codes = [clients[r].get(admin_url(f"keys/import/{job_id}/{page}")).status_code
                 for r in ("owner", "operator", "support")]
        assert codes == [200, 200, 403], page
    assert AuditLog.objects.filter(action="keys.import_report").count() == 2


def test_the_report_of_an_unfinished_job_is_refused_with_a_message(make_product):
    client = signed_in("owner")
    job_id = _job_id(_upload(client, make_product(), "keys.txt", KEYS))
    response = client.get(admin_url(f"keys/import/{job_id}/report.csv"), follow=True)
    assert "its report is ready when the import finishes" in response.content.decode()


def test_a_csv_upload_takes_the_chosen_column_by_name_or_number(make_product):
    client = signed_in("owner")
    data = b"note,code\nfirst,CSV-0001\nsecond,CSV-0002\n"
    by_name, by_number = make_product(), make_product()
    _job_id(_upload(client, by_name, "keys.csv", data, column="code"))
    _job_id(_upload(client, by_number, "export.txt", data, fmt="csv", column="2"))
    assert import_jobs_run_due(limit=2) == 2
    assert stored_keys(by_name) == stored_keys(by_number) == ["CSV-0001", "CSV-0002"]


@pytest.mark.parametrize("column,message", [
    ("serial", "column &#x27;serial&#x27; is not in the CSV header; its columns are &#x27;note&#x27;, &#x27;code&#x27;"),
    ("7", "column 7: the CSV header has 2 column(s)"),
    ("", "choose the CSV column that holds the keys"),
])
def test_a_bad_csv_column_is_refused_at_once_with_a_clear_message(make_product, column, message):
    response = _upload(signed_in("owner"), make_product(), "keys.csv", b"note,code\nx,CSV-1\n", column=column)
    assert response.status_code == 200
    assert message in response.content.decode()
    assert not ImportJob.objects.exists()


def test_pasted_keys_are_imported(make_product):
    client = signed_in("operator")
    product = make_product()
    response = client.post(admin_url("keys/import/"), {"product": product.pk, "fmt": "auto",
                                                        "text": "PASTE-1\r\nPASTE-2\nPASTE-1\n"})
    job = ImportJob.objects.get(pk=_job_id(response))
    import_jobs_run_due(limit=1)
    job.refresh_from_db()
    assert (job.filename, job.status, job.imported, job.duplicates) == ("pasted.txt", "done", 2, 1)


def test_the_form_wants_a_file_or_a_paste_not_both_nor_neither(make_product):
    client = signed_in("owner")
    product = make_product()
    neither = client.post(admin_url("keys/import/"), {"product": product.pk, "fmt": "auto", "text": ""})
    both = _upload(client, product, "keys.txt", KEYS, text="ALSO-THIS")
    for response in (neither, both):
        assert response.status_code == 200
        assert "Upload a file or paste keys (one of the two)." in response.content.decode()
    assert not ImportJob.objects.exists()


def test_an_empty_file_is_refused_with_a_message(make_product):
    response = _upload(signed_in("owner"), make_product(), "keys.txt", b"")
    assert response.status_code == 200 and not ImportJob.objects.exists()
    assert "The submitted file is empty." in response.content.decode()


def test_an_upload_over_the_limit_is_refused_before_it_is_read(make_product, settings):
    settings.KAMI_IMPORT_MAX_BYTES = 1024
    client = signed_in("owner")
    response = _upload(client, make_product(), "big.txt", b"K" * 10 + b"\n" * (2**20 + 4096))
    assert response.status_code == 302
    assert "larger than" in client.get(response["Location"]).content.decode()
    assert not ImportJob.objects.exists()


def test_the_import_jobs_list_links_each_job(make_product):
    client = signed_in("operator")
    job_id = _job_id(_upload(client, make_product(), "keys.txt", KEYS))
    page = client.get(admin_url("stock/importjob/")).content.decode()
    assert admin_url(f"keys/import/{job_id}/") in page and "keys.txt" in page
    assert client.get(admin_url(f"stock/importjob/{job_id}/change/")).status_code == 404


def test_the_upload_is_csrf_protected_although_its_handlers_are_swapped(make_product):
    # given a signed-in owner whose client now enforces CSRF like a browser
    client = signed_in("owner")
    client.handler.enforce_csrf_checks = True
    # when a form without the token is posted, then it is refused and nothing is queued
    assert _upload(client, make_product(), "keys.txt", KEYS).status_code == 403
    assert not ImportJob.objects.exists()
