"""Migrations stock 0008 / catalog 0008 (issue 13, "Several machines"): the files a one-machine
shop has in its data dir move into the database: every import report, the upload of each job not
ended yet (sealed, and deleted from the disk), and the product pictures."""
from __future__ import annotations

import os

import pytest
from django.core.management import call_command
from django.utils import timezone

from kami.core.datadir import keyring_text
from kami.stock.jobfiles import file_open
from kami.stock.jobs import import_job_report_open, import_job_run
from tests.migrating import back_to_latest, migrate_app  # noqa: F401 (fixture)

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def old_data_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("KAMI_DATA_KEY", keyring_text())  # the shop's keyring, wherever its data dir
    monkeypatch.setenv("KAMI_DATA_DIR", str(tmp_path))
    return tmp_path


def test_reports_and_unfinished_uploads_move_into_the_database(back_to_latest, old_data_dir):
    # given: before the migration, a finished job with its report and a queued one with its upload
    old = migrate_app("stock", [("stock", "0007_key_claim_available")])
    product = old.get_model("catalog", "Product").objects.create(slug="u", name="U", price="1.00")
    job = old.get_model("stock", "ImportJob").objects
    folder = old_data_dir / "imports"
    folder.mkdir()
    done = job.create(product=product, filename="a.txt", actor="a", status="done", created_at=timezone.now())
    done.report_path = str(folder / f"{done.pk}.report.csv")
    done.save()
    (folder / f"{done.pk}.report.csv").write_bytes(b"line,problem,detail\n3,duplicate in the file,line 1\n")
    queued = job.create(product=product, filename="b.txt", actor="a", status="queued", created_at=timezone.now())
    upload = b"".join(b"OLD-UPLOAD-%07d\n" % i for i in range(80_000))  # 1.5 MiB: two rows
    (folder / f"{queued.pk}.upload").write_bytes(upload)
    small = job.create(product=product, filename="c.txt", actor="a", status="queued", created_at=timezone.now())
    (folder / f"{small.pk}.upload").write_bytes(b"MOVED-1\nMOVED-2\nMOVED-1\n")
    # when
    new = migrate_app("stock", [("stock", "0008_import_files")])
    # then
    jobs = new.get_model("stock", "ImportJob").objects
    done, queued = jobs.get(pk=done.pk), jobs.get(pk=queued.pk)
    with file_open(done.report_id) as f:
        assert f.read() == b"line,problem,detail\n3,duplicate in the file,line 1\n"
    assert done.upload_id is None
    with file_open(queued.upload_id) as f:
        assert f.read() == upload
    chunks = new.get_model("stock", "ImportFileChunk").objects.filter(file_id=queued.upload_id)
    assert chunks.count() == 2 and all(c.key_id and b"OLD-UPLOAD" not in bytes(c.data) for c in chunks)
    assert sorted(os.listdir(folder)) == [f"{done.pk}.report.csv"]  # the plaintext uploads left the disk
    # and: a worker runs a moved job to its end, with a report of its own
    call_command("migrate", verbosity=0)
    ran = import_job_run(job_id=small.pk)
    assert (ran.status, ran.imported, ran.duplicates, ran.upload_id) == ("done", 2, 1, None)
    with import_job_report_open(job_id=small.pk, actor="a") as f:
        assert f.read() == b"line,problem,detail\n3,duplicate in the file,line 1\n"


def test_product_pictures_move_into_the_database(back_to_latest, old_data_dir):
    # given: the two files of a picture in the data dir, and a stray file beside them
    migrate_app("catalog", [("catalog", "0007_product_picture")])
    folder = old_data_dir / "pictures"
    folder.mkdir()
    names = ["12-0123456789abcdef-thumb.webp", "12-0123456789abcdef-page.webp"]
    for name in names:
        (folder / name).write_bytes(b"RIFF" + name.encode())
    (folder / "notes.txt").write_text("not a picture")
    # when
    new = migrate_app("catalog", [("catalog", "0008_picture_files")])
    # then
    rows = new.get_model("catalog", "PictureFile").objects.order_by("name").values_list("name", "data")
    assert [(name, bytes(data)) for name, data in rows] == sorted((n, b"RIFF" + n.encode()) for n in names)
