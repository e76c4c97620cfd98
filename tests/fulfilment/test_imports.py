"""import_jobs_run_due: the worker's runner for uploaded imports, then the restock backfill."""
from __future__ import annotations

import io
import threading
from io import StringIO

import pytest
from django.core.management import call_command
from django.db import connection

from kami.fulfilment.imports import import_jobs_run_due
from kami.orders.models import Order, OrderKey
from kami.stock.bulk import chunk_size
from kami.stock.jobs import import_job_create
from kami.stock.models import ImportBatch, ImportJob, Key
from tests.stock.helpers import awaiting_order

pytestmark = pytest.mark.django_db(transaction=True)


def upload(product, lines: list[str], name: str = "keys.txt") -> ImportJob:
    data = "".join(f"{line}\n" for line in lines).encode()
    return import_job_create(product=product, stream=io.BytesIO(data), filename=name, actor="alice")


def test_after_the_job_awaiting_orders_are_fulfilled_first_paid_first_served(make_product):
    # given: two paid orders waiting for keys (1 then 2), and an upload of two keys
    product = make_product()
    first = awaiting_order(product, quantity=1, paid_minutes_ago=20)
    second = awaiting_order(product, quantity=2, paid_minutes_ago=10)
    job = upload(product, ["NEW-1", "NEW-2"])
    # when
    ran = import_jobs_run_due()
    # then
    assert ran == 1 and ImportJob.objects.get(pk=job.pk).status == "done"
    assert Order.objects.get(pk=first.pk).status == "fulfilled"
    assert Order.objects.get(pk=second.pk).status == "awaiting_stock"  # needs two, one left: it waits its turn
    assert OrderKey.objects.filter(order=first).count() == 1
    assert import_jobs_run_due() == 0


def test_a_stopped_worker_puts_the_job_back_at_its_checkpoint(make_product):
    # given
    product = make_product()
    chunk, lines = chunk_size(), 2 * chunk_size() + 500
    job = upload(product, [f"STOP-{i}" for i in range(lines)])
    # when: the worker is asked to stop as soon as the first chunk is written
    assert import_jobs_run_due(owner="w1", stop=iter([False, True, True]).__next__) == 1
    # then: back in the queue with its progress, and the next run finishes it
    job.refresh_from_db()
    assert (job.status, job.lease_owner, job.imported) == ("queued", "", chunk)
    assert import_jobs_run_due(owner="w2") == 1
    job.refresh_from_db()
    assert (job.status, job.imported, job.duplicates, job.runs) == ("done", lines, 0, 2)
    assert Key.objects.filter(product=product).count() == lines


def test_worker_once_runs_uploaded_imports(make_product):
    product = make_product()
    upload(product, ["ONCE-1", "ONCE-2"])
    out = StringIO()
    call_command("worker", "--once", "--worker-id", "cli", stdout=out)
    assert out.getvalue().strip().endswith("imports: 1")
    assert Key.objects.filter(product=product).count() == 2


@pytest.mark.concurrency
def test_two_runners_never_run_the_same_job(make_product, server_db):
    # given: four queued jobs, and two workers starting at the same moment
    product = make_product()
    jobs = [upload(product, [f"J{j}-{i:05d}" for i in range(3000)], name=f"j{j}.txt") for j in range(4)]
    barrier, counts, errors = threading.Barrier(2), [], []

    def worker(name: str) -> None:
        try:
            barrier.wait()
            counts.append(import_jobs_run_due(limit=10, owner=name))
        except Exception as exc:  # noqa: BLE001 — surfaced by the assertion below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker, args=(f"w{i}",)) for i in range(2)]
    # when
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # then: each job ran once, in one batch, and every key is stored once
    assert errors == [] and sum(counts) == 4
    ran = ImportJob.objects.filter(pk__in=[j.pk for j in jobs]).order_by("id")
    assert list(ran.values_list("status", "runs", "imported")) == [("done", 1, 3000)] * 4
    assert ImportBatch.objects.filter(product=product).count() == 4
    assert Key.objects.filter(product=product).count() == 12000
