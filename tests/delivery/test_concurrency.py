"""Several workers draining one outbox at once: every message is sent exactly once.
Each worker is a thread with its own database connection, against a real SMTP server."""
from __future__ import annotations

import threading

import pytest
from django.db import connection

from kami.delivery.models import DeliveryAttempt, OutboxMessage
from kami.delivery.worker import run_once

DELIVERIES = 200


def drain_with_workers(workers: int) -> list[BaseException]:
    start, errors = threading.Barrier(workers), []

    def work(name: str) -> None:
        try:
            start.wait()
            while run_once(name, limit=5):
                pass
        except BaseException as exc:  # noqa: BLE001 — reported by the test
            errors.append(exc)
        finally:
            connection.close()  # this thread's own connection

    threads = [threading.Thread(target=work, args=(f"w{i}",)) for i in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not any(t.is_alive() for t in threads)
    return errors


def queue_deliveries(fulfilled_order, make_product) -> None:
    product = make_product(name="Gift card", max_qty=1)
    for i in range(DELIVERIES):
        fulfilled_order(keys=[f"GIFT-{i:04d}"], email=f"buyer{i}@example.com", product=product)
    assert OutboxMessage.objects.filter(kind="order_keys", status="pending").count() == DELIVERIES


def assert_each_sent_once(smtp) -> None:
    ids = smtp.message_ids()
    assert len(ids) == DELIVERIES and len(set(ids)) == DELIVERIES
    expected = {f"<kami-outbox-{pk}@testserver>" for pk in OutboxMessage.objects.values_list("id", flat=True)}
    assert set(ids) == expected
    assert set(OutboxMessage.objects.values_list("status", "attempts")) == {("sent", 1)}
    assert DeliveryAttempt.objects.count() == DELIVERIES


@pytest.mark.django_db(transaction=True)
@pytest.mark.concurrency
def test_workers_in_threads_send_every_message_exactly_once(server_db, smtp, fulfilled_order, make_product):
    # given
    queue_deliveries(fulfilled_order, make_product)
    # when
    errors = drain_with_workers(4)
    # then
    assert errors == []
    assert_each_sent_once(smtp)
    assert DeliveryAttempt.objects.values("worker").distinct().count() > 1  # they really shared the work


@pytest.mark.django_db(transaction=True)
def test_workers_in_threads_on_sqlite_too(smtp, fulfilled_order, make_product):
    if connection.vendor != "sqlite":
        pytest.skip("the server-database variant above covers this engine")
    queue_deliveries(fulfilled_order, make_product)
    errors = drain_with_workers(3)
    assert errors == []
    assert_each_sent_once(smtp)


@pytest.mark.django_db(transaction=True)
@pytest.mark.concurrency
def test_claim_skips_rows_another_worker_holds_instead_of_waiting(server_db, smtp):
    # given: another connection holds the oldest message's row lock (a claim in progress)
    from kami.delivery.services import admin_alert
    from kami.delivery.worker import outbox_claim

    for i in range(3):
        admin_alert(event="e", dedupe_key=str(i))
    first = OutboxMessage.objects.order_by("id").first()
    locked, release = threading.Event(), threading.Event()

    def hold() -> None:
        from django.db import transaction

        try:
            with transaction.atomic():
                OutboxMessage.objects.select_for_update().get(id=first.id)
                locked.set()
                release.wait(30)
        finally:
            connection.close()

    holder = threading.Thread(target=hold)
    holder.start()
    assert locked.wait(10)
    try:
        # when
        claimed = outbox_claim(worker_id="w1", limit=10)
    finally:
        release.set()
        holder.join(30)
    # then: the other two, at once; the held one is left to its holder
    assert sorted(m.id for m in claimed) == sorted(OutboxMessage.objects.exclude(id=first.id).values_list("id", flat=True))
    assert OutboxMessage.objects.get(id=first.id).status == "pending"


@pytest.mark.django_db(transaction=True)
def test_claim_queries_walk_the_index_without_sorting_on_mariadb(server_db):
    # A sort under FOR UPDATE makes MariaDB lock every due row, not just the batch.
    if connection.vendor != "mysql":
        pytest.skip("PostgreSQL locks rows after sort and limit; the plan matters on MariaDB")
    from django.db import transaction

    from kami.core import clock
    from kami.delivery.services import admin_alert
    from kami.delivery.worker import due_querysets

    for i in range(50):
        admin_alert(event="e", dedupe_key=str(i))
    for due in due_querysets(clock.now()):
        with transaction.atomic():  # FOR UPDATE needs one
            plan = due[:10].explain()
        assert "outbox_due" in plan and "filesort" not in plan.lower(), plan
