"""The server's clock jumps (issue 12): across an order's expiry, across a delivery's backoff, and
under a worker's lease — forward (a suspended VM waking up, NTP catching up) and backward (NTP
stepping a fast clock back). Nothing fires twice, nothing never. The clock is Kami's own
(kami/core/clock.py), moved by the test; the database, the SMTP server and the sweep are real."""
from __future__ import annotations

from datetime import timedelta

import pytest

from kami.core import clock
from kami.delivery.models import DeliveryAttempt, OutboxMessage
from kami.delivery.worker import LEASE_EXPIRED, outbox_claim, outbox_perform, run_once
from kami.fulfilment.backfill import sweep
from kami.orders.models import Order, OrderEvent, OrderKey
from tests.delivery.conftest import keys_message
from tests.factories import add_keys
from tests.sandbox_play import enable_sandbox, sandbox_notify

pytestmark = pytest.mark.django_db


def pending_order(client, make_product) -> Order:
    enable_sandbox()
    product = make_product(name="Clock card")
    add_keys(product, ["CLOCK-0001", "CLOCK-0002"])
    made = client.post("/api/v1/orders", {"product": product.slug, "quantity": 1, "email": "clock@example.com",
                                          "gateway": "sandbox"}, content_type="application/json")
    assert made.status_code == 201, made.content
    return Order.objects.get(order_no=made.json()["order_no"])


def events(order: Order, kind: str) -> int:
    return OrderEvent.objects.filter(order=order, kind=kind).count()


def until(moment) -> timedelta:
    """The travel that puts Kami's clock at `moment` (from real time)."""
    clock.travel(None)
    return moment - clock.now()


def test_an_order_expires_once_when_the_clock_jumps_over_its_expiry_and_back(client, make_product, settings):
    # given: a pending order, expiring at its TTL (plus the grace for late notifications)
    order = pending_order(client, make_product)
    deadline = order.expires_at + timedelta(seconds=settings.KAMI_PAYMENT_GRACE_SECONDS)
    # when: the clock jumps to just before the deadline, and the sweep runs
    clock.travel(until(deadline - timedelta(seconds=5)))
    assert sweep()["expired"] == 0
    # then: not expired early
    order.refresh_from_db()
    assert order.status == Order.Status.PENDING
    # when: it jumps a day past the deadline; the sweep runs twice, and again a week later
    clock.travel(until(deadline + timedelta(days=1)))
    assert sweep()["expired"] == 1
    assert sweep()["expired"] == 0
    clock.travel(until(deadline + timedelta(days=8)))
    assert sweep()["expired"] == 0
    # and: NTP steps the clock back to before the order's expiry, and the sweep runs again
    clock.travel(until(order.expires_at - timedelta(minutes=10)))
    assert sweep()["expired"] == 0
    # then: expired exactly once, and not brought back by the clock going back
    order.refresh_from_db()
    assert order.status == Order.Status.EXPIRED and events(order, "expired") == 1
    # when: the gateway's notification arrives now (the clock says "in time"), twice
    for _ in range(2):
        assert sandbox_notify(client, order_no=order.order_no, amount=str(order.amount)).status_code == 200
    # then: the expired order is flagged for a human once, never fulfilled, no key sold
    order.refresh_from_db()
    assert order.status == Order.Status.FLAGGED and order.flag_reason == "paid_after_expiry"
    assert events(order, "flagged") == 1 and events(order, "fulfilled") == 0 and not OrderKey.objects.filter(order=order).exists()
    assert OutboxMessage.objects.filter(dedupe_key__startswith="alert:flagged:").count() >= 1
    assert not OutboxMessage.objects.filter(kind="order_keys").exists()


def test_a_payment_seen_after_a_forward_jump_is_flagged_once_and_never_also_expired(client, make_product, settings):
    # given: a pending order; the clock jumps past its deadline before any sweep has run
    order = pending_order(client, make_product)
    clock.travel(until(order.expires_at + timedelta(seconds=settings.KAMI_PAYMENT_GRACE_SECONDS, hours=2)))
    # when: the notification comes first, then the sweep, then the notification again
    assert sandbox_notify(client, order_no=order.order_no, amount=str(order.amount)).status_code == 200
    assert sweep()["expired"] == 0
    assert sandbox_notify(client, order_no=order.order_no, amount=str(order.amount)).status_code == 200
    # then: one outcome, recorded once
    order.refresh_from_db()
    assert order.status == Order.Status.FLAGGED
    assert (events(order, "flagged"), events(order, "expired"), events(order, "fulfilled")) == (1, 0, 0)


def test_an_order_paid_in_time_is_fulfilled_once_whatever_the_clock_does_after(client, make_product, settings):
    # given: an order paid within its time
    order = pending_order(client, make_product)
    assert sandbox_notify(client, order_no=order.order_no, amount=str(order.amount)).status_code == 200
    # when: the clock jumps a month ahead and the sweep runs; then back an hour, and the gateway repeats itself
    clock.travel(timedelta(days=31))
    sweep()
    clock.travel(timedelta(hours=-1))
    sweep()
    assert sandbox_notify(client, order_no=order.order_no, amount=str(order.amount)).status_code == 200
    # then: fulfilled once, with one key, one email queued
    order.refresh_from_db()
    assert order.status == Order.Status.FULFILLED and OrderKey.objects.filter(order=order).count() == 1
    assert (events(order, "fulfilled"), events(order, "expired")) == (1, 0)
    assert OutboxMessage.objects.filter(kind="order_keys").count() == 1


@pytest.mark.django_db(transaction=True)
def test_a_retry_fires_once_when_the_clock_jumps_back_then_forward_over_its_backoff(smtp, settings,
                                                                                   fulfilled_order):
    # given: the mail server answers "try later" for this buyer: the first attempt fails
    settings.KAMI_DELIVERY_BACKOFF = [600, 3600]
    smtp.refuse["late@example.com"] = "451 4.3.0 try again later"
    order = fulfilled_order(email="late@example.com", keys=("LATE-0001",))
    assert run_once("w1") == 1
    row = keys_message(order)
    assert (row.status, row.attempts) == ("failed", 1)
    due = row.next_attempt_at
    del smtp.refuse["late@example.com"]
    # when: the clock steps back an hour: the retry is not due, however often the worker looks
    clock.travel(timedelta(hours=-1))
    assert run_once("w1") == 0 and run_once("w1") == 0
    # and: forward to just before the retry
    clock.travel(until(due - timedelta(seconds=1)))
    assert run_once("w1") == 0
    # when: it jumps a day past the retry (a suspended machine waking up)
    clock.travel(until(due + timedelta(days=1)))
    sent = run_once("w1") + run_once("w1") + run_once("w1")
    # then: sent exactly once, on its second attempt
    row.refresh_from_db()
    assert sent == 1 and (row.status, row.attempts) == ("sent", 2)
    assert len(smtp.to("late@example.com")) == 1


@pytest.mark.django_db(transaction=True)
def test_a_forward_jump_under_a_lease_never_sends_twice(smtp, settings, fulfilled_order):
    # given: worker A claimed a delivery (leased 10 s), not sent yet
    order = fulfilled_order(email="lease@example.com", keys=("LEASE-0001",))
    [claimed_by_a] = outbox_claim(worker_id="a")
    # when: the clock jumps an hour: A's lease looks expired, so worker B takes the row over
    clock.travel(timedelta(hours=1))
    [claimed_by_b] = outbox_claim(worker_id="b")
    # then: A, resuming, finds its lease gone and does not send; B sends it
    assert outbox_perform(claimed_by_a, worker_id="a") == "lost"
    assert outbox_perform(claimed_by_b, worker_id="b") == "sent"
    assert run_once("a") == 0
    # and: one email; the takeover counted as a lost attempt (bounded retries)
    row = keys_message(order)
    assert len(smtp.to("lease@example.com")) == 1 and (row.status, row.attempts) == ("sent", 2)
    assert list(DeliveryAttempt.objects.filter(message=row).order_by("id").values_list("worker", "error")) == [
        ("b", LEASE_EXPIRED), ("b", "")]


@pytest.mark.django_db(transaction=True)
def test_a_backward_jump_under_a_lease_keeps_it_with_its_worker(smtp, settings, fulfilled_order):
    # given: worker A claimed a delivery
    order = fulfilled_order(email="back@example.com", keys=("BACK-0001",))
    [claimed] = outbox_claim(worker_id="a")
    # when: the clock steps back an hour; worker B looks for work
    clock.travel(timedelta(hours=-1))
    assert outbox_claim(worker_id="b") == []
    # then: A sends it, once
    assert outbox_perform(claimed, worker_id="a") == "sent"
    assert run_once("b") == 0
    row = keys_message(order)
    assert len(smtp.to("back@example.com")) == 1 and (row.status, row.attempts) == ("sent", 1)
