"""The mail server down for the whole backoff schedule (shortened here to two 1 s steps), then
back (issue 12): every delivery ends `manual`, the merchant is alerted once per delivery however
many attempts it took, and `kami deliveries retry --all` drains the backlog in queue order."""
from __future__ import annotations

import re

import pytest
from aiosmtpd.controller import Controller

from kami.audit.models import AuditLog
from kami.delivery.models import OutboxMessage
from tests.delivery.conftest import Mailbox
from tests.ports import free_port
from tests.faults.processes import database_url, kami_run, kami_start, kill, wait_until

pytestmark = pytest.mark.django_db(transaction=True)
BUYERS = 6


def outbox_id(mail) -> int:
    return int(re.fullmatch(r"<kami-outbox-(\d+)@[^>]+>", str(mail["Message-ID"])).group(1))


def test_smtp_down_for_the_whole_schedule_then_retry_all_drains_in_order(fulfilled_order, tmp_path):
    # given: paid orders, a worker, and nothing listening on the mail port
    port = free_port()
    env = {"DATABASE_URL": database_url(), "EMAIL_URL": f"smtp://127.0.0.1:{port}", "KAMI_FROM_EMAIL": "noreply@shop.test",
           "KAMI_WORKER_POLL_SECONDS": "0.2", "KAMI_SWEEP_SECONDS": "3600", "KAMI_DELIVERY_BACKOFF": "1,1",
           "KAMI_WORKER_SENDERS": "1"}  # one at a time: the mail server sees the queue's order (each sender keeps it)
    for i in range(BUYERS):
        fulfilled_order(email=f"buyer{i}@example.com", keys=(f"DOWN-{i:04d}",))
    worker = kami_start(["worker", "--worker-id", "w"], env=env, log=tmp_path / "worker.log")
    mailbox, controller = Mailbox(), None
    try:
        # when: every attempt of the schedule fails
        wait_until(lambda: OutboxMessage.objects.filter(kind="order_keys", status="manual").count() == BUYERS
                   and not OutboxMessage.objects.exclude(status="manual").exists(), timeout=40,
                   what="every delivery and alert out of attempts", step=0.2)
        # then: three attempts each, and one alert per delivery (not one per attempt)
        keys_rows = OutboxMessage.objects.filter(kind="order_keys")
        assert set(keys_rows.values_list("attempts", flat=True)) == {3}
        assert all("Connection refused" in row.last_error for row in keys_rows)
        alerts = OutboxMessage.objects.filter(kind="admin_alert", payload__event="delivery_manual")
        assert sorted(alerts.values_list("dedupe_key", flat=True)) == sorted(
            f"alert:delivery_manual:{row.pk}:email" for row in keys_rows)
        assert "could not be delivered" in (tmp_path / "worker.log").read_text()  # the alerts' own failure: logged
        # when: the mail server is back and the merchant retries the whole manual queue from the shell
        controller = Controller(mailbox, hostname="127.0.0.1", port=port)
        controller.start()
        retried = kami_run(["deliveries", "retry", "--all"], env=env)
        assert retried.returncode == 0, retried.stderr
        backlog = OutboxMessage.objects.count()
        wait_until(lambda: OutboxMessage.objects.filter(status="sent").count() == backlog, timeout=30,
                   what="the backlog drained", step=0.2)
    finally:
        kill(worker)
        if controller is not None:
            controller.stop()
    # then: everything sent once, oldest first; one alert email per delivery
    assert f"{backlog} manual deliveries are due now" in retried.stdout
    ids = [outbox_id(m) for m in mailbox.messages]
    assert ids == sorted(OutboxMessage.objects.values_list("id", flat=True))
    for i in range(BUYERS):
        [mail] = mailbox.to(f"buyer{i}@example.com")
        assert f"DOWN-{i:04d}" in mail.get_body(preferencelist=("plain",)).get_content()
    assert alerts.filter(status="sent").count() == BUYERS
    assert len(mailbox.to("owner@shop.test")) == OutboxMessage.objects.filter(kind="admin_alert").count()
    assert list(AuditLog.objects.filter(action="delivery.retry_all").values_list("actor", "detail__count")) == [
        ("cli", backlog)]
