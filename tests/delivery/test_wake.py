"""Waking the worker on new deliveries (issue 9, kami/delivery/wake.py): on PostgreSQL a committed
delivery NOTIFYs the listening workers, a rolled-back one does not; a real `kami worker` polling
only every 30 s sends a key email within seconds; elsewhere, and when the listener is lost, the
worker polls."""
from __future__ import annotations

import threading
import time

import pytest
from django.db import connection, transaction

from kami.delivery.services import outbox_enqueue
from kami.delivery.wake import OutboxListener
from tests.faults.processes import database_url, kami_start, kill, log_has, wait_until

pytestmark = pytest.mark.django_db(transaction=True)


def postgres_only():
    if connection.vendor != "postgresql":
        pytest.skip("LISTEN/NOTIFY is PostgreSQL's; the other engines poll")


def queue_alert(n: int) -> None:
    outbox_enqueue(kind="admin_alert", channel="log", target="log", dedupe_key=f"wake-test:{n}",
                   payload={"subject": "s", "body": "b"})


def test_a_committed_delivery_wakes_a_listener_and_a_rolled_back_one_does_not():
    postgres_only()
    listener, stop = OutboxListener(), threading.Event()
    listener.start()
    try:
        assert listener.conn is not None
        # when: a transaction queues a delivery and rolls back
        with pytest.raises(RuntimeError), transaction.atomic():
            queue_alert(1)
            raise RuntimeError("rolled back")
        # then: nobody is woken
        assert listener.wait(1.5, stop) is False
        # when: one commits
        started = time.monotonic()
        with transaction.atomic():
            queue_alert(2)
        # then: the listener hears it at once, and once (the second wait runs out)
        assert listener.wait(5, stop) is True
        heard = time.monotonic() - started
        assert heard < 2
        assert listener.wait(0.5, stop) is False
    finally:
        listener.close()
    print(f"woken {heard * 1000:.0f} ms after the commit")


def test_a_burst_of_deliveries_is_a_few_wakes_not_one_per_delivery():
    postgres_only()
    listener, stop = OutboxListener(), threading.Event()
    listener.start()
    try:
        # when: 50 transactions queue a delivery each, back to back
        for n in range(50):
            with transaction.atomic():
                queue_alert(n)
        # then: the listener is woken, and what it then drains is fewer NOTIFYs than deliveries
        assert listener.wait(5, stop) is True
        time.sleep(0.5)
        more = sum(1 for _ in listener.conn.notifies(timeout=0.2))
    finally:
        listener.close()
    print(f"50 deliveries, {more} wake-ups left after the first")
    assert more < 49


def test_without_postgresql_or_without_its_listener_the_worker_waits_the_poll_interval():
    # given: a listener that cannot listen (another engine, or its connection gone)
    listener, stop = OutboxListener(), threading.Event()
    listener.start()
    if listener.conn is not None:
        listener.conn.close()  # the database cut it (a restart): waiting must not fail
    # when / then: it waits the poll interval (polling), without an error
    started = time.monotonic()
    assert listener.wait(0.6, stop) is False
    assert 0.5 <= time.monotonic() - started < 3
    # and: a stop cuts the wait short
    stop.set()
    started = time.monotonic()
    assert listener.wait(30, stop) is False
    assert time.monotonic() - started < 1
    listener.close()


def test_a_worker_polling_every_30s_sends_a_new_key_email_within_seconds(server_db, smtp, fulfilled_order,
                                                                       tmp_path):
    postgres_only()
    # given: a real `kami worker` that polls only every 30 s, listening
    env = {"DATABASE_URL": database_url(), "EMAIL_URL": f"smtp://127.0.0.1:{smtp.port}",
           "KAMI_FROM_EMAIL": "noreply@shop.test", "KAMI_WORKER_POLL_SECONDS": "30", "KAMI_SWEEP_SECONDS": "3600"}
    worker = kami_start(["worker", "--worker-id", "listening"], env=env, log=tmp_path / "worker.log")
    try:
        wait_until(lambda: log_has(tmp_path / "worker.log", "woken by NOTIFY"), timeout=60, what="the worker listening")
        time.sleep(1)  # its first pass is done: it waits now
        # when: an order is paid while it waits
        began = time.monotonic()
        fulfilled_order(keys=("WAKE-0001",), email="wake@example.com")
        started = time.monotonic()  # the sale committed
        # then: the email is at the SMTP server within seconds, not at the next poll 30 s later
        wait_until(lambda: smtp.to("wake@example.com"), timeout=10, what="the key email", step=0.02)
        took = time.monotonic() - started
    finally:
        kill(worker)
    print(f"paid → email accepted by the SMTP server in {took * 1000:.0f} ms (poll interval 30 s); "
          f"the order took {(started - began) * 1000:.0f} ms to make")
    assert took < 5
    assert "WAKE-0001" in smtp.to("wake@example.com")[0].get_body(preferencelist=("plain",)).get_content()
