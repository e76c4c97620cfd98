"""The worker loop: retries with backoff, escalation to manual, leases after a crash, no secrets in logs."""
from __future__ import annotations

import logging
import threading
from datetime import timedelta

import pytest

from kami.core import clock
from kami.delivery import channels
from kami.delivery.channels import TemporaryFailure, channel_get
from kami.delivery.models import DeliveryAttempt, OutboxMessage
from kami.delivery.services import admin_alert, outbox_enqueue
from kami.delivery.worker import LEASE_EXPIRED, outbox_claim, outbox_perform, outbox_release, run_once, run_pass
from kami.orders.models import Order
from tests.delivery.conftest import keys_message, run_forever_until
from tests.ports import free_port


@pytest.mark.django_db(transaction=True)
def test_smtp_down_then_up_delivers_once_after_backoff(smtp, settings, fulfilled_order):
    # given: nothing listens on the mail port
    settings.KAMI_DELIVERY_BACKOFF = [60, 600]
    settings.EMAIL_PORT = free_port()
    order = fulfilled_order()
    # when
    before = clock.now()
    assert run_once("w1") == 1
    # then: failed, next try 30–60 s later (50–100 % of the first step)
    row = keys_message(order)
    assert (row.status, row.attempts) == ("failed", 1)
    assert before + timedelta(seconds=30) <= row.next_attempt_at <= clock.now() + timedelta(seconds=60)
    assert "Connection" in row.last_error and "AAAA-1111" not in row.last_error
    assert run_once("w1") == 0  # not due yet
    # when: the mail server is back and the retry is due
    settings.EMAIL_PORT = smtp.port
    clock.travel(timedelta(seconds=61))
    assert run_once("w1") == 1
    # then
    row.refresh_from_db()
    assert (row.status, row.attempts, row.last_error) == ("sent", 2, "")
    assert len(smtp.to("buyer@example.com")) == 1
    assert list(DeliveryAttempt.objects.filter(message=row).order_by("id").values_list("ok", flat=True)) == [False, True]
    clock.travel(timedelta(hours=48))
    assert run_once("w1") == 0  # sent stays sent


@pytest.mark.django_db(transaction=True)
def test_past_the_last_attempt_goes_manual_and_the_merchant_is_emailed(smtp, settings, fulfilled_order):
    # given: one retry in the schedule, the buyer's mailbox keeps answering 4xx
    settings.KAMI_DELIVERY_BACKOFF = [10]
    smtp.refuse["buyer@example.com"] = "451 4.3.0 try again later"
    order = fulfilled_order()
    run_once("w1")
    assert keys_message(order).status == "failed"
    # when: the retry fails too
    clock.travel(timedelta(seconds=11))
    run_once("w1")
    # then
    row = keys_message(order)
    assert (row.status, row.attempts) == ("manual", 2)
    alert = OutboxMessage.objects.get(kind="admin_alert", dedupe_key=f"alert:delivery_manual:{row.pk}:email")
    assert alert.status == "pending" and order.order_no in alert.payload["subject"]
    # when: the next pass sends the alert to the merchant (whose mailbox works)
    run_once("w1")
    alert.refresh_from_db()
    assert alert.status == "sent"
    [mail] = smtp.to("owner@shop.test")
    assert order.order_no in str(mail["Subject"]) and "AAAA-1111" not in mail.as_string()
    clock.travel(timedelta(days=3))
    assert run_once("w1") == 0  # manual is final: no more tries, no second alert
    assert OutboxMessage.objects.filter(kind="admin_alert").count() == 1


@pytest.mark.django_db(transaction=True)
def test_an_alert_that_cannot_be_sent_is_logged_not_alerted_about(smtp, settings, caplog):
    settings.KAMI_DELIVERY_BACKOFF = []
    settings.EMAIL_PORT = free_port()
    settings.KAMI_ADMIN_LANGUAGE = "en"
    admin_alert(event="low_stock", dedupe_key="p1",
                params={"product": "steam-100", "product_name": "Steam 100", "left": 2, "threshold": 5})
    with caplog.at_level(logging.ERROR, logger="kami.delivery.worker"):
        run_once("w1")
    assert OutboxMessage.objects.get().status == "manual"
    assert OutboxMessage.objects.count() == 1
    assert any(r.levelno == logging.ERROR and "Low stock" in r.getMessage() for r in caplog.records)


@pytest.mark.django_db(transaction=True)
def test_a_worker_killed_after_claiming_is_replaced_when_its_lease_expires(smtp, settings, fulfilled_order):
    # given: a worker claims three deliveries and dies before sending (it never performs them)
    settings.KAMI_DELIVERY_LEASE_SECONDS = 300
    orders = [fulfilled_order(email=f"b{i}@example.com") for i in range(3)]
    dead = outbox_claim(worker_id="dead", limit=10)
    assert len(dead) == 3
    assert run_once("alive") == 0  # leased: nobody else takes them
    # when: the lease runs out
    clock.travel(timedelta(seconds=301))
    assert run_once("alive") == 3
    # then: each delivered exactly once; the lost attempt is counted
    ids = smtp.message_ids()
    assert len(ids) == len(set(ids)) == 3
    for order in orders:
        row = keys_message(order)
        assert (row.status, row.attempts) == ("sent", 2)
        assert [a.error for a in DeliveryAttempt.objects.filter(message=row).order_by("id")] == [LEASE_EXPIRED, ""]
    # when: the dead worker comes back and carries on with what it had claimed
    outcomes = [outbox_perform(m, worker_id="dead") for m in dead]
    # then: it may not send or record anything
    assert outcomes == ["lost"] * 3
    assert len(smtp.messages) == 3
    assert set(OutboxMessage.objects.values_list("status", "attempts")) == {("sent", 2)}


class TakeoverChannel:
    """A channel so slow that its lease runs out mid-send and another worker delivers the
    message meanwhile; then it fails. Its late result must not overwrite the newer one."""

    name = "slow"

    def __init__(self):
        self.sent = []

    def send(self, message):
        if self.sent:
            self.sent.append(message.id)  # the second worker: delivered
            return
        self.sent.append(None)
        clock.travel(timedelta(seconds=301))
        assert run_once("second") == 1
        raise TemporaryFailure("timed out")


@pytest.mark.django_db(transaction=True)
def test_a_worker_whose_lease_expired_cannot_record_its_result(settings, monkeypatch):
    # given
    settings.KAMI_DELIVERY_LEASE_SECONDS = 300
    channel_get("log")  # builtins loaded, then the fake added beside them
    fake = TakeoverChannel()
    monkeypatch.setitem(channels._registry, "slow", fake)
    outbox_enqueue(kind="admin_alert", channel="slow", target="x", dedupe_key="slow-1", payload={"subject": "s"})
    # when
    outcomes = run_pass(worker_id="first")
    # then: the second worker's success stands, the first one's failure is only history
    assert dict(outcomes) == {"lost": 1}
    row = OutboxMessage.objects.get()
    assert (row.status, row.attempts, row.last_error) == ("sent", 2, "")
    attempts = list(DeliveryAttempt.objects.order_by("id").values_list("worker", "ok", "error"))
    assert attempts == [("second", False, LEASE_EXPIRED), ("second", True, ""),
                        ("first", False, "late, lease lost: timed out")]


@pytest.mark.django_db(transaction=True)
def test_stopping_releases_claimed_messages_at_once(smtp):
    for i in range(3):
        admin_alert(event="e", dedupe_key=str(i))
    stop = threading.Event()
    stop.set()
    assert run_once("w1", stop_event=stop) == 0
    assert set(OutboxMessage.objects.values_list("status", "lease_until")) == {("pending", None)}
    assert run_once("w2") == 3


@pytest.mark.django_db(transaction=True)
def test_release_only_touches_rows_still_leased_to_us(smtp):
    admin_alert(event="e", dedupe_key="1")
    [mine] = outbox_claim(worker_id="w1", limit=5)
    clock.travel(timedelta(days=1))
    assert run_once("w2") == 1
    assert outbox_release([mine]) == 0
    assert OutboxMessage.objects.get().status == "sent"


@pytest.mark.django_db(transaction=True)
def test_run_forever_delivers_and_stops_when_asked(smtp, fulfilled_order):
    # given
    fulfilled_order()
    # when
    errors = run_forever_until(lambda: bool(smtp.messages), timeout=30)
    # then
    assert errors == []
    assert len(smtp.messages) == 1
    assert OutboxMessage.objects.get().status == "sent"


@pytest.mark.django_db(transaction=True)
def test_no_key_in_any_log_record_or_error(smtp, settings, caplog, fulfilled_order):
    # given: distinctive keys, every logger at DEBUG (SQL too)
    settings.DEBUG = True
    settings.KAMI_DELIVERY_BACKOFF = [5]
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="django.db.backends")
    caplog.set_level(logging.DEBUG, logger="kami")
    secrets = ["ZEBRA-7Q2X-KEY-ONE", "OKAPI-9F4M-KEY-TWO", "LYNX-3D8W-KEY-THREE"]
    ok = fulfilled_order(keys=secrets[:2])
    down = fulfilled_order(keys=secrets[2:], email="down@example.com")
    smtp.refuse["down@example.com"] = "451 4.4.1 down@example.com temporarily unavailable"
    # when: one delivery succeeds, one fails, retries, ends manual, the alert goes out
    run_once("w1")
    clock.travel(timedelta(seconds=6))
    run_once("w1")
    run_once("w1")
    # then
    assert keys_message(ok).status == "sent" and keys_message(down).status == "manual"
    assert smtp.to("owner@shop.test")
    assert any(r.name == "django.db.backends" for r in caplog.records)  # the capture really was at DEBUG
    kami_records = [r for r in caplog.records if not r.name.startswith("mail.log")]  # the SMTP server under test
    assert any(r.name.startswith("kami.delivery") for r in kami_records)
    formatter = logging.Formatter()
    logged = "\n".join(r.getMessage() + (formatter.formatException(r.exc_info) if r.exc_info else "")
                       for r in kami_records)
    stored = [str(v) for v in OutboxMessage.objects.values_list("last_error", "payload")]
    stored += DeliveryAttempt.objects.values_list("error", flat=True)
    for secret in secrets:
        assert secret not in logged
        assert not any(secret in text for text in stored)


@pytest.mark.django_db(transaction=True)
def test_a_message_whose_workers_keep_dying_ends_manual(smtp, settings, fulfilled_order):
    # given: one attempt allowed, and the worker that took it died
    settings.KAMI_DELIVERY_BACKOFF = []
    order = fulfilled_order()
    assert len(outbox_claim(worker_id="dead", limit=5)) == 1
    # when
    clock.travel(timedelta(seconds=settings.KAMI_DELIVERY_LEASE_SECONDS + 1))
    performed = run_once("w1")
    # then: not sent again blindly; a human decides
    row = keys_message(order)
    assert performed == 0
    assert (row.status, row.attempts, row.last_error) == ("manual", 1, LEASE_EXPIRED)
    assert OutboxMessage.objects.filter(dedupe_key=f"alert:delivery_manual:{row.pk}:email").exists()


@pytest.mark.django_db(transaction=True)
def test_keys_of_an_order_refunded_before_delivery_are_not_sent(smtp, fulfilled_order):
    order = fulfilled_order()
    Order.objects.filter(pk=order.pk).update(status=Order.Status.REFUNDED)
    run_once("w1")
    row = keys_message(order)
    assert (row.status, row.attempts) == ("manual", 1)
    assert "refunded" in row.last_error
    assert smtp.to("buyer@example.com") == []


@pytest.mark.django_db(transaction=True)
def test_outbox_perform_refuses_to_run_inside_a_transaction(smtp):
    from django.db import transaction

    admin_alert(event="e", dedupe_key="1")
    [message] = outbox_claim(worker_id="w1", limit=1)
    with pytest.raises(RuntimeError, match="outside a transaction"):
        with transaction.atomic():
            outbox_perform(message, worker_id="w1")
    assert smtp.messages == []
