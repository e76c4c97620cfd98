"""Key files uploaded over the merchant API: a background job through the back office's upload
path (kami.stock.jobs), 202 with its Location, progress while it runs, the report once done; the
worker's runner (kami.fulfilment.imports) imports and then fulfils waiting orders."""
from __future__ import annotations

from kami.audit.models import AuditLog
from kami.fulfilment.imports import import_jobs_run_due
from kami.orders.models import Order
from kami.stock.models import ImportJob, Key
from tests.api.conftest import Api, assert_problem
from tests.stock.helpers import awaiting_order


def test_an_upload_is_queued_202_with_its_location_then_the_worker_imports_it(make_token, make_product):
    # given
    product = make_product("gift-10")
    api = Api(make_token("stock", name="erp"))
    # when
    response = api.upload("/stock/gift-10/imports", b"K-1\nK-2\nK-1\n\n", name="batch.txt")
    # then: queued, nothing imported yet
    assert response.status_code == 202, response.content
    job = response.json()
    assert response["Location"] == f"/api/v1/merchant/imports/{job['id']}" == job["status_url"]
    assert (job["status"], job["product"], job["filename"], job["fmt"], job["report_url"]) == \
        ("queued", "gift-10", "batch.txt", "txt", None)
    assert Key.objects.count() == 0
    assert AuditLog.objects.get(action="keys.import_upload").actor == "api:erp"
    # when the worker runs it
    assert import_jobs_run_due(limit=5) == 1
    done = api.get(f"/imports/{job['id']}").json()
    # then
    assert (done["status"], done["percent"], done["imported"], done["duplicates"], done["blank"]) == \
        ("done", 100, 2, 1, 1)
    assert done["report_url"] == f"/api/v1/merchant/imports/{job['id']}/report"
    assert Key.objects.filter(product=product).count() == 2


def test_the_report_is_csv_without_keys_and_each_download_is_audited(api_as, make_product):
    # given
    make_product("gift-10")
    api = api_as("stock")
    job = api.upload("/stock/gift-10/imports", b"SECRET-1\nSECRET-1\n").json()
    # when: before and after the run
    early = api.get(f"/imports/{job['id']}/report")
    import_jobs_run_due()
    report = api.get(f"/imports/{job['id']}/report")
    # then
    assert "ready when the import finishes" in assert_problem(early, 409, "conflict")["detail"]
    assert report.status_code == 200 and report["Content-Type"] == "text/csv; charset=utf-8"
    text = b"".join(report.streaming_content).decode()
    assert text.startswith("line,problem,detail\n") and "2,duplicate" in text and "SECRET" not in text
    assert AuditLog.objects.filter(action="keys.import_report").count() == 1
    assert_problem(api.get("/imports/999999"), 404, "not-found")
    assert_problem(api.get("/imports/999999/report"), 404, "not-found")


def test_a_csv_column_is_checked_at_once_and_a_good_one_imported(api_as, make_product):
    # given
    make_product("gift-10")
    api = api_as("stock")
    data = b"serial,note\nS-1,a\nS-2,b\n"
    # when
    wrong = api.upload("/stock/gift-10/imports", data, name="keys.csv", column="code")
    right = api.upload("/stock/gift-10/imports", data, name="keys.csv", column="serial")
    import_jobs_run_due(limit=5)
    # then
    assert "code" in assert_problem(wrong, 422, "invalid")["detail"]
    assert right.status_code == 202 and right.json()["fmt"] == "csv"
    assert api.get(f"/imports/{right.json()['id']}").json()["imported"] == 2
    assert ImportJob.objects.count() == 1


def test_a_repeated_upload_answers_the_same_job_and_queues_nothing_more(api_as, make_product):
    # given
    make_product("gift-10")
    api = api_as("stock")
    first = api.upload("/stock/gift-10/imports", b"K-1\n", key="upload-1")
    # when
    again = api.upload("/stock/gift-10/imports", b"K-1\n", key="upload-1")
    other_file = api.upload("/stock/gift-10/imports", b"K-2\n", key="upload-1")
    # then
    assert first.status_code == again.status_code == 202 and again.json() == first.json()
    assert again["Idempotent-Replayed"] == "true" and again["Location"] == first["Location"]
    assert ImportJob.objects.count() == 1
    assert_problem(other_file, 422, "idempotency-key-reused")


def test_empty_oversized_and_missing_files_are_refused_naming_the_fix(api_as, make_product, settings):
    # given
    make_product("gift-10")
    settings.KAMI_IMPORT_MAX_BYTES = 10
    api = api_as("stock")
    # when / then
    assert "empty" in assert_problem(api.upload("/stock/gift-10/imports", b""), 422, "invalid")["detail"]
    big = assert_problem(api.upload("/stock/gift-10/imports", b"K" * 11), 413, "too-large")
    assert "split it" in big["detail"]
    assert_problem(api.upload("/stock/nope/imports", b"K-1\n"), 404, "not-found")
    assert_problem(api.upload("/stock/gift-10/imports", b"K-1\n", key=None), 400, "idempotency-key-missing")
    no_file = api.client.post("/api/v1/merchant/stock/gift-10/imports", {"format": "txt"},
                              HTTP_AUTHORIZATION=f"Bearer {api.secret}", HTTP_IDEMPOTENCY_KEY="k-none")
    assert "file" in assert_problem(no_file, 422, "invalid")["detail"]
    assert ImportJob.objects.count() == 0


def test_orders_waiting_for_stock_are_fulfilled_when_the_job_has_run(api_as, make_product):
    # given: a paid order parked for lack of stock
    product = make_product("gift-10")
    order = awaiting_order(product)
    api = api_as("stock")
    # when
    api.upload("/stock/gift-10/imports", b"K-1\n")
    import_jobs_run_due()
    # then
    assert Order.objects.get(pk=order.pk).status == Order.Status.FULFILLED
