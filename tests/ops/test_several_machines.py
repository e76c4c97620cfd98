"""Several machines (issue 13): a web (`kami serve --no-worker`) and a worker (`kami worker`) with
different data dirs, sharing only the database and the secrets a merchant gives both
(KAMI_DATA_KEY, KAMI_SECRET_KEY). A key file uploaded to the web through the merchant API is
imported by the worker and its report downloaded from the web; a product picture stored on one
machine is served by the web and sent by the worker's Telegram path on the other. Each is its
own OS process; nothing but the database connects them (docs/scaling.md, "Several machines").

PostgreSQL and MariaDB (KAMI_TEST_DATABASE_URL): the files are rows of engine-specific types
(bytea, longblob), and a shop on several machines runs a database server."""
from __future__ import annotations

import csv
import io
import uuid
from pathlib import Path

import httpx
import pytest
from django.db import connection
from PIL import Image

from kami.api.tokens import api_token_create
from kami.catalog.models import PictureFile
from kami.core.datadir import keyring_text
from kami.stock.models import ImportFile, ImportFileChunk, ImportJob, Key
from kami.stock.vault import key_fingerprint
from tests.faults.processes import database_url, kami_run, kami_start, kill, log_has, wait_until
from tests.faults.test_database_restart import healthz
from tests.ports import free_port

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

KEYS = [f"MULTI-{i:05d}" for i in range(3000)]
# The worker's process reads the picture the way its Telegram bot sends it.
PHOTO = """
from kami.catalog.models import Product
from kami.telegram.pictures import product_photo
photo = product_photo(Product.objects.get(slug="gift-multi"))
print("PHOTO", len(photo or b""), (photo or b"")[:3].hex())
"""


@pytest.fixture
def machines(tmp_path):
    if connection.vendor == "sqlite":
        pytest.skip("several machines share a database server: run with KAMI_TEST_DATABASE_URL (PostgreSQL, MariaDB)")
    shared = {"DATABASE_URL": database_url(), "KAMI_DATA_KEY": keyring_text(), "KAMI_SECRET_KEY": "s" * 50,
              "KAMI_WORKER_POLL_SECONDS": "0.2", "KAMI_SWEEP_SECONDS": "3600"}
    port = free_port()
    web = {**shared, "KAMI_DATA_DIR": str(tmp_path / "web"), "KAMI_BASE_URL": f"http://127.0.0.1:{port}"}
    worker = {**shared, "KAMI_DATA_DIR": str(tmp_path / "worker"), "KAMI_BASE_URL": f"http://127.0.0.1:{port}"}
    procs = [kami_start(["serve", "--no-worker", "--port", str(port)], env=web, log=tmp_path / "web.log"),
             kami_start(["worker", "--worker-id", "far-worker"], env=worker, log=tmp_path / "worker.log")]
    try:
        base = f"http://127.0.0.1:{port}"
        wait_until(lambda: healthz(base) == 200, timeout=180, what="the web answering")
        wait_until(lambda: log_has(tmp_path / "worker.log", "started (poll"), timeout=180, what="the worker started")
        yield base, web, worker
    finally:
        for proc in procs:
            kill(proc)


def picture(colour: tuple[int, int, int]) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (800, 600), colour).save(out, "PNG")
    return out.getvalue()


@pytest.mark.timeout(900)
def test_an_upload_to_the_web_is_imported_by_a_worker_with_another_data_dir(machines, make_product, tmp_path):
    # given: a web and a worker, each with its own data dir, and a merchant API token
    base, web, worker = machines
    product = make_product("gift-multi")
    token = api_token_create(name="erp", scopes="read,stock", actor="test").secret
    data = ("\n".join(KEYS) + "\n" + KEYS[7] + "\nbad\x01line\n").encode()
    # when: the key file is uploaded to the web
    with httpx.Client(base_url=f"{base}/api/v1/merchant", timeout=60,
                      headers={"Authorization": f"Bearer {token}"}) as api:
        sent = api.post(f"/stock/{product.slug}/imports", files={"file": ("keys.txt", data, "text/plain")},
                        headers={"Idempotency-Key": uuid.uuid4().hex})
        assert sent.status_code == 202, sent.text
        job_id = sent.json()["id"]
        # then: the worker imports it, and the web answers its progress and serves its report
        done = wait_until(lambda: _finished(api.get(f"/imports/{job_id}").json()), timeout=300,
                          what="the worker finishing the import", step=0.3)
        report = api.get(f"/imports/{job_id}/report")
    assert (done["status"], done["imported"], done["duplicates"], done["invalid"]) == ("done", len(KEYS), 1, 1), done
    assert report.status_code == 200, report.text
    rows = list(csv.reader(io.StringIO(report.text)))
    assert rows == [["line", "problem", "detail"], [str(len(KEYS) + 1), "duplicate in the file", "line 8"],
                    [str(len(KEYS) + 2), "contains control character U+0001", ""]]
    stored = set(Key.objects.filter(product=product).values_list("fingerprint", flat=True))
    assert stored == {key_fingerprint(k) for k in KEYS}  # sealed by the worker under the shared data key
    # and: it was the far worker, and neither data dir holds the upload (the database held it; it is gone now)
    assert log_has(tmp_path / "worker.log", f"import job #{job_id} done")
    job = ImportJob.objects.get(pk=job_id)
    assert job.upload_id is None and set(ImportFile.objects.values_list("pk", flat=True)) == {job.report_id}
    assert not ImportFileChunk.objects.exclude(file_id=job.report_id).exists()
    for data_dir in (web["KAMI_DATA_DIR"], worker["KAMI_DATA_DIR"]):
        assert [p.name for p in Path(data_dir).rglob("*") if "import" in str(p) and p.is_file()] == [], data_dir


@pytest.mark.timeout(900)
def test_a_picture_stored_on_one_machine_is_served_and_sent_on_the_other(machines, make_product, tmp_path):
    # given: a web and a worker, each with its own data dir, and a product
    base, web, worker = machines
    product = make_product("gift-multi")
    photo = tmp_path / "photo.png"
    photo.write_bytes(picture((200, 30, 30)))
    # when: the merchant gives the product a picture on the web's machine (its CLI, its data dir)
    done = kami_run(["product", "set", product.slug, f"picture=@{photo}"], env=web, timeout=180)
    assert done.returncode == 0, done.stderr[-2000:]
    # then: the web serves it, and the worker's machine sends it as the bot does
    product.refresh_from_db()
    served = httpx.get(f"{base}/pictures/{product.picture_page}", timeout=30)
    assert served.status_code == 200 and served.headers["content-type"] in ("image/webp", "image/png")
    assert Image.open(io.BytesIO(served.content)).size == (800, 600)
    assert _photo_on(worker) > 1000
    # and: a new picture stored on the worker's machine is what the web serves next, the old one gone
    photo.write_bytes(picture((30, 200, 30)))
    done = kami_run(["product", "set", product.slug, f"picture=@{photo}"], env=worker, timeout=180)
    assert done.returncode == 0, done.stderr[-2000:]
    old_page = product.picture_page
    product.refresh_from_db()
    assert product.picture_page != old_page
    assert httpx.get(f"{base}/pictures/{old_page}", timeout=30).status_code == 404
    fresh = httpx.get(f"{base}/pictures/{product.picture_page}", timeout=30)
    assert fresh.status_code == 200
    assert Image.open(io.BytesIO(fresh.content)).convert("RGB").getpixel((400, 300))[1] > 150  # green, not red
    assert set(PictureFile.objects.values_list("name", flat=True)) == {product.picture_thumb, product.picture_page}
    # and: no machine keeps a picture in its data dir
    for data_dir in (web["KAMI_DATA_DIR"], worker["KAMI_DATA_DIR"]):
        assert not (Path(data_dir) / "pictures").exists(), data_dir


def _finished(progress: dict) -> dict | None:
    return progress if progress.get("status") in ("done", "failed") else None


def _photo_on(env: dict) -> int:
    done = kami_run(["shell", "-c", PHOTO], env=env, timeout=180)
    assert done.returncode == 0, done.stderr[-2000:]
    line = next(line for line in done.stdout.splitlines() if line.startswith("PHOTO "))
    _, size, head = line.split()
    assert head == "ffd8ff", line  # a JPEG, as sendPhoto gets it
    return int(size)
