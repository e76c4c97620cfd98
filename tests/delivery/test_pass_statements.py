"""A worker pass's database work (kami/delivery/worker.py `run_pass`): the orders and keys of all
its key emails read together, one short check per email that its order is still as read (so a
refund or a replacement is seen), the sends recorded together, the lease asked only when in doubt. And what batching
must not cost: an email accepted is recorded sent whatever happens to the next one, a
failing email gets its own retry, nothing is sent twice or lost. Real SMTP, real databases."""
from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from kami.core import clock
from kami.delivery import worker
from kami.delivery.channels import email as email_channel
from kami.delivery.leases import lease_seconds
from kami.delivery.models import DeliveryAttempt, OutboxMessage
from kami.delivery.worker import run_pass
from kami.fulfilment.refund import order_refund
from kami.fulfilment.replace import order_key_replace
from kami.orders.models import Order
from tests.delivery.conftest import keys_message
from tests.factories import add_keys

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def patient(monkeypatch, settings):
    """The pass never records early, nor doubts its lease, for the time it took: a loaded test
    machine must not change the statement count (those bounds are tested on their own: below, and
    tests/delivery/test_leases.py). A pass slower than two thirds of the 10 s lease, as one was
    beside two other engines' suites, asks the database for its lease before the next email."""
    monkeypatch.setattr(worker, "RECORD_WITHIN_SECONDS", 3600)
    settings.KAMI_DELIVERY_LEASE_SECONDS = 600


def key_emails(fulfilled_order, make_product, count: int, first: int = 0) -> list[OutboxMessage]:
    product = make_product(name=f"Gift card {first}", max_qty=2)
    return [keys_message(fulfilled_order(keys=[f"GIFT-{i:04d}-A", f"GIFT-{i:04d}-B"], email=f"buyer{i}@example.com",
                                         product=product))
            for i in range(first, first + count)]


def pass_statements() -> tuple[dict, list[str]]:
    """One pass; its outcomes and the statements it ran on this thread's connection (the lease
    keeper's thread has its own), lower case without identifier quotes, whatever the engine."""
    with CaptureQueriesContext(connection) as queries:
        outcomes = run_pass(worker_id="w1")
    return dict(outcomes), [q["sql"].lower().replace('"', "").replace("`", "") for q in queries.captured_queries]


def key_reads(sql: list[str]) -> int:
    return sum("from orders_orderkey" in s for s in sql)


def state_checks(sql: list[str]) -> int:
    return sum(s.startswith("select o.status, k.key_id") for s in sql)


def attempt_writes(sql: list[str]) -> int:
    return sum(s.startswith("insert into delivery_deliveryattempt") for s in sql)


def test_a_pass_of_twenty_emails_runs_one_statement_more_per_email_than_a_pass_of_one(smtp, fulfilled_order, make_product, patient):
    # given: a first pass done (the shop's settings cached since), one key email queued, then twenty
    key_emails(fulfilled_order, make_product, 1)
    pass_statements()
    key_emails(fulfilled_order, make_product, 1, first=1)
    one = pass_statements()
    rows = key_emails(fulfilled_order, make_product, 20, first=2)
    # when
    twenty = pass_statements()
    # then: every email out, each with its own keys; the nineteen extra cost their own short check
    # each and nothing else (one read of orders and keys, one record, for the pass)
    assert one[0] == {"sent": 1} and twenty[0] == {"sent": 20}
    assert len(twenty[1]) == len(one[1]) + 19, (one, twenty)
    assert key_reads(twenty[1]) == attempt_writes(twenty[1]) == 1 and state_checks(twenty[1]) == 20
    for i, row in enumerate(rows, start=2):
        row.refresh_from_db()
        assert (row.status, row.attempts, row.message_id) == ("sent", 1, f"<kami-outbox-{row.pk}@testserver>")
        [mail] = smtp.to(row.target)
        body = mail.get_body(("plain",)).get_content()
        assert f"GIFT-{i:04d}-A" in body and f"GIFT-{i:04d}-B" in body and f"GIFT-{i - 1:04d}-A" not in body


def test_the_third_of_five_failing_leaves_the_others_sent_and_gets_its_own_retry(smtp, settings, fulfilled_order,
                                                                                make_product, patient):
    # given: five key emails; the mail server turns the third buyer away for now
    settings.KAMI_DELIVERY_BACKOFF = [60, 600]
    rows = key_emails(fulfilled_order, make_product, 5)
    smtp.refuse[rows[2].target] = "451 4.3.0 try again later"
    before = clock.now()
    # when
    outcomes, _ = pass_statements()
    # then: 1, 2, 4, 5 recorded sent once each; 3 failed with its own backoff
    assert outcomes == {"sent": 4, "failed": 1}
    for row in rows:
        row.refresh_from_db()
    third, others = rows[2], rows[:2] + rows[3:]
    assert all((r.status, r.attempts, r.lease_token) == ("sent", 1, "") for r in others)
    assert all(len(smtp.to(r.target)) == 1 for r in others)
    assert (third.status, third.attempts, third.lease_token) == ("failed", 1, "")
    assert "451" in third.last_error and "GIFT-" not in third.last_error
    assert before + timedelta(seconds=30) <= third.next_attempt_at <= clock.now() + timedelta(seconds=60)
    assert smtp.to(third.target) == []
    assert sorted(DeliveryAttempt.objects.values_list("message_id", "ok")) == sorted(
        [(r.pk, True) for r in others] + [(third.pk, False)])
    # when: the server takes it again and the retry is due
    del smtp.refuse[third.target]
    clock.travel(timedelta(seconds=61))
    # then: only the third goes again
    assert dict(run_pass(worker_id="w1")) == {"sent": 1}
    third.refresh_from_db()
    assert (third.status, third.attempts) == ("sent", 2)
    assert len(smtp.messages) == 5


class Interrupted(BaseException):
    """Not an error a channel reports: the worker itself stops mid-pass (KeyboardInterrupt-like)."""


def test_a_pass_stopped_by_an_exception_still_records_what_went_out(smtp, fulfilled_order, make_product, patient,
                                                                    monkeypatch):
    # given: five key emails; the worker is interrupted while preparing the fourth
    rows = key_emails(fulfilled_order, make_product, 5)
    real, seen = email_channel._order_keys_email, []

    def interrupting(message, order, keys):
        seen.append(message.pk)
        if len(seen) == 4:
            raise Interrupted()
        return real(message, order, keys)

    monkeypatch.setattr(email_channel, "_order_keys_email", interrupting)
    # when
    with pytest.raises(Interrupted):
        run_pass(worker_id="w1")
    # then: the three accepted are recorded sent; the rest handed back untouched, due again
    for row in rows:
        row.refresh_from_db()
    assert [(r.status, r.attempts) for r in rows[:3]] == [("sent", 1)] * 3
    assert [(r.status, r.attempts, r.lease_token) for r in rows[4:]] == [("pending", 0, "")]
    assert len(smtp.messages) == 3
    # and: the one interrupted mid-send keeps its lease (its outcome unknown) and is taken over after it
    assert (rows[3].status, rows[3].attempts) == ("sending", 0)
    monkeypatch.setattr(email_channel, "_order_keys_email", real)
    clock.travel(timedelta(seconds=lease_seconds() + 1))
    assert dict(run_pass(worker_id="w2")) == {"sent": 2}
    assert len(smtp.messages) == 5 and len(set(smtp.message_ids())) == 5


def test_a_slow_pass_records_its_sends_sooner(smtp, fulfilled_order, make_product, monkeypatch):
    # given: every send counts as overdue for its record at once
    monkeypatch.setattr(worker, "RECORD_WITHIN_SECONDS", 0)
    rows = key_emails(fulfilled_order, make_product, 5)
    # when
    outcomes, sql = pass_statements()
    # then: the same outcome, each email recorded on its own
    assert outcomes == {"sent": 5}
    assert attempt_writes(sql) == 5 and key_reads(sql) == 1
    for i, row in enumerate(rows):
        row.refresh_from_db()
        assert (row.status, row.attempts) == ("sent", 1)
        [mail] = smtp.to(row.target)
        assert f"GIFT-{i:04d}-A" in mail.get_body(("plain",)).get_content()


def test_an_order_refunded_while_the_pass_runs_is_not_mailed_its_keys(smtp, fulfilled_order, make_product, monkeypatch):
    # given: two key emails; the second order is refunded while the first email is being written,
    # after the pass has read both orders
    rows = key_emails(fulfilled_order, make_product, 2)
    second = Order.objects.get(pk=rows[1].payload["order_id"])
    real = email_channel._order_keys_email

    def refunding(message, order, keys):
        if message.pk == rows[0].pk:
            order_refund(order_no=second.order_no, reason="changed my mind")
        return real(message, order, keys)

    monkeypatch.setattr(email_channel, "_order_keys_email", refunding)
    # when
    run_pass(worker_id="w1")
    # then: the first buyer has their keys; the refunded order's keys (voided) are not mailed
    assert len(smtp.to(rows[0].target)) == 1
    assert smtp.to(rows[1].target) == []
    rows[1].refresh_from_db()
    assert rows[1].status == "manual" and "refunded" in rows[1].last_error


def test_a_sent_row_taken_over_before_the_pass_records_it_keeps_the_other_workers_lease(
        smtp, fulfilled_order, make_product, patient, monkeypatch):
    # given: three key emails; while the second is written, another worker has taken the first
    # over (its lease ran out by that worker's clock) after it went out, before it was recorded
    rows = key_emails(fulfilled_order, make_product, 3)
    real = email_channel._order_keys_email

    def taken_over(message, order, keys):
        if message.pk == rows[1].pk:
            OutboxMessage.objects.filter(pk=rows[0].pk).update(lease_token="other-worker", lease_until=clock.now())
        return real(message, order, keys)

    monkeypatch.setattr(email_channel, "_order_keys_email", taken_over)
    # when
    outcomes = dict(run_pass(worker_id="w1"))
    # then: the first is the other worker's still, with a late attempt row; the others are sent
    assert outcomes == {"sent": 2, "lost": 1}
    for row in rows:
        row.refresh_from_db()
    assert (rows[0].status, rows[0].lease_token, rows[0].attempts) == ("sending", "other-worker", 0)
    assert [(r.status, r.lease_token) for r in rows[1:]] == [("sent", "")] * 2
    assert DeliveryAttempt.objects.get(message_id=rows[0].pk).error == "late, lease lost: sent"


def test_a_key_replaced_while_the_pass_runs_is_mailed_as_replaced(smtp, fulfilled_order, make_product, monkeypatch):
    # given: two key emails; while the first is written, the merchant replaces the second order's
    # first key (the pass has already read both orders and their keys)
    rows = key_emails(fulfilled_order, make_product, 2)
    second = Order.objects.get(pk=rows[1].payload["order_id"])
    add_keys(second.product, ["SPARE-0001"])
    old = second.order_keys.get(position=0).key_id
    real = email_channel._order_keys_email

    def replacing(message, order, keys):
        if message.pk == rows[0].pk:
            order_key_replace(order_no=second.order_no, key_pk=old, reason="did not work", actor="staff")
        return real(message, order, keys)

    monkeypatch.setattr(email_channel, "_order_keys_email", replacing)
    # when
    run_pass(worker_id="w1")
    # then: the second buyer's email holds the new key, not the one taken back
    [mail] = smtp.to(rows[1].target)
    body = mail.get_body(("plain",)).get_content()
    assert "SPARE-0001" in body and "GIFT-0001-B" in body and "GIFT-0001-A" not in body
