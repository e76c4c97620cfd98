"""The delivery queue's services: list, retry now, mark handled, resend an order's keys — each
audited, each refusing what it cannot do with a reason; resends go through real SMTP."""
from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from django.db import connection

from kami.audit.models import AuditLog
from kami.core import clock
from kami.core.errors import BadInput, NotFound
from kami.delivery.models import OutboxMessage
from kami.delivery.selectors import deliveries_list
from kami.delivery.services import admin_alert, delivery_mark_handled, delivery_retry_now, outbox_enqueue
from kami.delivery.worker import run_once
from kami.fulfilment.resend import order_delivery_resend
from kami.orders.models import Order
from tests.delivery.conftest import keys_message
from tests.ports import free_port

pytestmark = pytest.mark.django_db(transaction=True)


def manual_delivery(smtp, settings, fulfilled_order, email="buyer@example.com"):
    """An order whose key email went `manual`: the mail server was down past the last attempt."""
    settings.KAMI_DELIVERY_BACKOFF = []
    settings.EMAIL_PORT = free_port()
    order = fulfilled_order(email=email)
    run_once("w1")
    settings.EMAIL_PORT = smtp.port
    row = keys_message(order)
    assert row.status == "manual"
    return order, row


def test_list_shows_open_rows_newest_first_with_their_last_error(smtp, settings, fulfilled_order):
    # given: a manual delivery (plus its alert), a sent one, a retrying one
    order, manual = manual_delivery(smtp, settings, fulfilled_order)
    settings.KAMI_DELIVERY_BACKOFF = [60]
    sent = outbox_enqueue(kind="order_refunded", channel="log", target="log", dedupe_key="x:sent")
    OutboxMessage.objects.filter(pk=sent.pk).update(status="sent")
    clock.travel(timedelta(seconds=1))
    retrying = outbox_enqueue(kind="admin_alert", channel="email", target="owner@shop.test", dedupe_key="x:retry")
    OutboxMessage.objects.filter(pk=retrying.pk).update(status="failed", attempts=1, last_error="SMTP 451")
    alert = OutboxMessage.objects.get(kind="admin_alert", payload__event="delivery_manual")
    # when / then
    assert [m.pk for m in deliveries_list()] == [retrying.pk, alert.pk, manual.pk]
    assert [m.pk for m in deliveries_list(status="retrying")] == [retrying.pk]
    assert [m.pk for m in deliveries_list(status="failed")] == [retrying.pk]
    settings.KAMI_DELIVERY_BACKOFF = []  # shortened: its one attempt was the last, its next one ends it
    assert [m.pk for m in deliveries_list(status="failed")] == [retrying.pk]
    assert [m.pk for m in deliveries_list(status="retrying")] == []
    [row] = deliveries_list(status="manual")
    assert row.pk == manual.pk and "Connection" in row.last_error and row.last_attempt_at is not None
    assert [m.pk for m in deliveries_list(kind="order_keys")] == [manual.pk]
    assert [m.pk for m in deliveries_list(status="sent")] == [sent.pk]
    assert len(deliveries_list(limit=1)) == 1
    with pytest.raises(BadInput, match="unknown delivery status filter 'broken': use one of open, pending"):
        deliveries_list(status="broken")


def test_retry_now_sends_a_manual_delivery_once_the_cause_is_fixed(smtp, settings, fulfilled_order):
    # given: keys that could not be sent while the mail server was down; it is back now
    order, row = manual_delivery(smtp, settings, fulfilled_order)
    # when
    again = delivery_retry_now(message_id=row.pk, actor="alice", ip="203.0.113.9")
    # then: due now, audited
    assert (again.status, again.next_attempt_at <= clock.now()) == ("pending", True)
    audit = AuditLog.objects.get(action="delivery.retry")
    assert (audit.actor, audit.ip, audit.object_id, audit.detail["status_before"]) == ("alice", "203.0.113.9",
                                                                                       str(row.pk), "manual")
    # when: the worker's next pass
    run_once("w1")
    # then: delivered once
    row.refresh_from_db()
    assert (row.status, row.attempts) == ("sent", 2)
    assert len(smtp.to("buyer@example.com")) == 1


def test_a_manual_row_that_fails_again_returns_to_manual_without_a_second_alert(smtp, settings, fulfilled_order):
    order, row = manual_delivery(smtp, settings, fulfilled_order)
    settings.EMAIL_PORT = free_port()
    delivery_retry_now(message_id=row.pk, actor="alice")
    run_once("w1")
    row.refresh_from_db()
    assert row.status == "manual"
    assert OutboxMessage.objects.filter(kind="admin_alert", payload__event="delivery_manual").count() == 1


def test_retry_now_refuses_sent_sending_and_handled_rows(smtp, fulfilled_order):
    order = fulfilled_order()
    run_once("w1")
    sent = keys_message(order)
    with pytest.raises(BadInput, match=rf"delivery #{sent.pk} was already sent at .* resend the order's delivery"):
        delivery_retry_now(message_id=sent.pk, actor="alice")
    busy = outbox_enqueue(kind="admin_alert", channel="log", target="log", dedupe_key="busy")
    OutboxMessage.objects.filter(pk=busy.pk).update(status="sending", lease_until=clock.now() + timedelta(minutes=5))
    with pytest.raises(BadInput, match="being sent by a worker right now"):
        delivery_retry_now(message_id=busy.pk, actor="alice")
    closed = outbox_enqueue(kind="admin_alert", channel="log", target="log", dedupe_key="closed")
    OutboxMessage.objects.filter(pk=closed.pk).update(status="handled", handled_by="bob")
    with pytest.raises(BadInput, match="marked handled by bob"):
        delivery_retry_now(message_id=closed.pk, actor="alice")
    with pytest.raises(NotFound, match="no delivery #999999"):
        delivery_retry_now(message_id=999999, actor="alice")
    assert not AuditLog.objects.filter(action="delivery.retry").exists()


def test_mark_handled_closes_the_row_for_good(smtp, settings, fulfilled_order):
    # given
    order, row = manual_delivery(smtp, settings, fulfilled_order)
    # when
    done = delivery_mark_handled(message_id=row.pk, note="  sent the order link by WeChat ", actor="alice", ip="::1")
    # then
    assert (done.status, done.note, done.handled_by) == ("handled", "sent the order link by WeChat", "alice")
    assert done.handled_at is not None
    audit = AuditLog.objects.get(action="delivery.handled")
    assert (audit.actor, audit.detail["note"], audit.detail["status_before"]) == ("alice", done.note, "manual")
    assert row.pk not in [m.pk for m in deliveries_list()]
    assert [m.pk for m in deliveries_list(status="handled")] == [row.pk]
    # and the worker never takes it again
    clock.travel(timedelta(days=2))
    run_once("w1")
    assert OutboxMessage.objects.get(pk=row.pk).status == "handled" and smtp.to("buyer@example.com") == []


def test_mark_handled_needs_a_note_and_an_open_failure(smtp, fulfilled_order):
    order = fulfilled_order()
    row = keys_message(order)
    with pytest.raises(BadInput, match="note: say what was done"):
        delivery_mark_handled(message_id=row.pk, note="   ", actor="alice")
    with pytest.raises(BadInput, match="has not been tried yet"):
        delivery_mark_handled(message_id=row.pk, note="done", actor="alice")
    run_once("w1")
    with pytest.raises(BadInput, match="was sent: it needs no handling"):
        delivery_mark_handled(message_id=row.pk, note="done", actor="alice")
    assert not AuditLog.objects.filter(action="delivery.handled").exists()


def test_resend_queues_a_new_email_each_time_over_real_smtp(smtp, fulfilled_order):
    # given: an order whose keys were emailed
    order = fulfilled_order(keys=["RESEND-KEY-1"])
    run_once("w1")
    # when: support resends twice
    first = order_delivery_resend(order_id=order.pk, actor="support1", ip="198.51.100.7")
    second = order_delivery_resend(order_id=order.pk, actor="support1")
    run_once("w1")
    # then: two more emails, each with its own Message-ID, each carrying the key
    assert (first.dedupe_key, second.dedupe_key) == (f"order_keys:{order.pk}:resend:1", f"order_keys:{order.pk}:resend:2")
    mails = smtp.to("buyer@example.com")
    assert len(mails) == 3 and len({str(m["Message-ID"]) for m in mails}) == 3
    assert all("RESEND-KEY-1" in m.get_body(preferencelist=("plain",)).get_content() for m in mails)
    assert OutboxMessage.objects.get(pk=second.pk).status == "sent"
    audits = AuditLog.objects.filter(action="order.resend_delivery").order_by("id")
    assert [(a.actor, a.object_id, a.detail["resend"]) for a in audits] == [("support1", order.order_no, 1),
                                                                           ("support1", order.order_no, 2)]
    assert order.events.filter(kind="delivery_resent").count() == 2
    assert "RESEND-KEY-1" not in str(list(OutboxMessage.objects.values("payload")))


@pytest.mark.parametrize("status, hint", [("awaiting_stock", "import keys or fulfil it by hand first"),
                                          ("refunded", "revoked by the refund"), ("pending", "it is not paid")])
def test_resend_refuses_an_order_that_is_not_fulfilled(fulfilled_order, status, hint):
    order = fulfilled_order()
    Order.objects.filter(pk=order.pk).update(status=status)
    with pytest.raises(BadInput, match=rf"order {order.order_no} is {status}, not fulfilled: .*{hint}"):
        order_delivery_resend(order_id=order.pk, actor="support1")
    assert not OutboxMessage.objects.filter(dedupe_key__contains="resend").exists()
    with pytest.raises(NotFound):
        order_delivery_resend(order_id=10**9, actor="support1")


@pytest.mark.concurrency
def test_concurrent_resends_of_one_order_each_get_their_own_row(server_db, fulfilled_order):
    # given
    order = fulfilled_order()
    start, rows, errors = threading.Barrier(4), [], []

    def resend() -> None:
        try:
            start.wait()
            rows.append(order_delivery_resend(order_id=order.pk, actor="support"))
        except BaseException as exc:  # noqa: BLE001 — reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=resend) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    # then: the order lock serialises them: resend 1..4, no unique-key clash
    assert errors == []
    assert sorted(r.dedupe_key for r in rows) == [f"order_keys:{order.pk}:resend:{n}" for n in range(1, 5)]


def test_alert_rows_can_be_retried_and_handled_like_any_delivery(settings):
    settings.KAMI_DELIVERY_BACKOFF = []
    [row] = admin_alert(event="low_stock", dedupe_key="p1", params={"product": "p1", "left": 0, "threshold": 3})
    OutboxMessage.objects.filter(pk=row.pk).update(status="manual", attempts=1, last_error="telegram answered HTTP 502")
    assert delivery_retry_now(message_id=row.pk, actor="alice").status == "pending"
    OutboxMessage.objects.filter(pk=row.pk).update(status="failed")
    assert delivery_mark_handled(message_id=row.pk, note="seen in the log", actor="alice").status == "handled"
