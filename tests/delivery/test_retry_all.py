""""Retry now" for a whole backlog: `deliveries_retry_all` and `kami deliveries retry`."""
from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from kami.audit.models import AuditLog
from kami.core.errors import BadInput
from kami.delivery.models import OutboxMessage
from kami.delivery.services import deliveries_retry_all, outbox_enqueue
from kami.delivery.worker import outbox_claim

pytestmark = pytest.mark.django_db


def queue(statuses: list[str]) -> list[int]:
    ids = []
    for i, status in enumerate(statuses):
        row = outbox_enqueue(kind="admin_alert", channel="log", target="x", dedupe_key=f"r-{i}", payload={"subject": "s"})
        OutboxMessage.objects.filter(id=row.id).update(status=status, attempts=3)
        ids.append(row.id)
    return ids


def test_retry_all_makes_the_manual_queue_due_in_queue_order():
    # given: manual rows queued in some order, and rows in other states
    ids = queue(["manual", "sent", "manual", "failed", "handled", "manual"])
    manual = [ids[0], ids[2], ids[5]]
    # when
    count = deliveries_retry_all(actor="boss", ip="127.0.0.1")
    # then: only the manual rows, claimed oldest first (before the failed one also due), attempts kept
    assert count == 3
    assert [m.id for m in outbox_claim(worker_id="w", limit=10)] == [*manual, ids[3]]
    assert set(OutboxMessage.objects.filter(id__in=manual).values_list("attempts", flat=True)) == {3}
    # and: one audit row for the whole action
    [audit] = AuditLog.objects.filter(action="delivery.retry_all")
    assert (audit.actor, audit.detail["count"], audit.detail["status_before"]) == ("boss", 3, "manual")


def test_retry_all_refuses_a_status_it_does_not_take():
    with pytest.raises(BadInput, match="manual or the failed"):
        deliveries_retry_all(actor="boss", status="sent")


def test_the_cli_retries_all_failed_or_given_ids_and_says_what_it_did():
    # given
    manual_id, failed_id = queue(["manual", "failed"])
    out = StringIO()
    # when / then
    call_command("deliveries", "retry", "--all", "--failed", stdout=out)
    assert "1 failed deliveries are due now" in out.getvalue()
    call_command("deliveries", "retry", str(manual_id), stdout=out)
    assert f"#{manual_id}" in out.getvalue()
    assert set(OutboxMessage.objects.values_list("status", flat=True)) == {"pending"}
    assert set(AuditLog.objects.values_list("actor", flat=True)) == {"cli"}


def test_the_cli_asks_which_deliveries_and_refuses_a_sent_one():
    [sent_id] = queue(["sent"])
    with pytest.raises(CommandError, match="say which deliveries"):
        call_command("deliveries", "retry")
    with pytest.raises(CommandError, match="already sent"):
        call_command("deliveries", "retry", str(sent_id))
