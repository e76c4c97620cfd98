"""Outbox housekeeping (kami/delivery/housekeeping.py): sent rows older than the keep period go,
in batches, with their attempt log; nothing else ever does; a worker delivering at the same time
is not held up."""
from __future__ import annotations

import threading
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection

from kami.core import clock
from kami.core.errors import BadInput
from kami.delivery.housekeeping import outbox_prune
from kami.delivery.models import DeliveryAttempt, OutboxMessage
from kami.delivery.worker import run_once

S = OutboxMessage.Status


def make_rows(status: str, *, days_ago: float, count: int = 1, prefix: str = "") -> list[int]:
    """Outbox rows of `status`, created (and sent, for sent rows) `days_ago`, one attempt each."""
    at = clock.now() - timedelta(days=days_ago)
    prefix = prefix or f"{status}:{days_ago}"
    rows = OutboxMessage.objects.bulk_create([
        OutboxMessage(kind="admin_alert", channel="log", target="log", dedupe_key=f"prune:{prefix}:{i}",
                      payload={"subject": "s", "body": "b"}, status=status, attempts=1, next_attempt_at=at,
                      created_at=at, sent_at=at if status == S.SENT else None)
        for i in range(count)])
    ids = list(OutboxMessage.objects.filter(dedupe_key__startswith=f"prune:{prefix}:").values_list("id", flat=True))
    assert len(ids) == len(rows)
    DeliveryAttempt.objects.bulk_create([DeliveryAttempt(message_id=i, at=at, ok=status == S.SENT) for i in ids])
    return ids


@pytest.mark.django_db
def test_only_sent_rows_older_than_the_keep_period_go_with_their_attempts():
    # given: old rows of every status, and recent sent ones
    old_sent = make_rows(S.SENT, days_ago=45, count=3)
    kept = (make_rows(S.SENT, days_ago=29, count=2) + make_rows(S.MANUAL, days_ago=90) + make_rows(S.FAILED, days_ago=90)
            + make_rows(S.HANDLED, days_ago=90) + make_rows(S.PENDING, days_ago=90))
    # when
    report = outbox_prune(keep_days=30)
    # then: the old sent rows and their attempt log are gone, nothing else is
    assert (report.deliveries, report.attempts) == (3, 3)
    assert not OutboxMessage.objects.filter(id__in=old_sent).exists()
    assert not DeliveryAttempt.objects.filter(message_id__in=old_sent).exists()
    assert sorted(OutboxMessage.objects.values_list("id", flat=True)) == sorted(kept)
    assert DeliveryAttempt.objects.count() == len(kept)


@pytest.mark.django_db
def test_batches_by_primary_key_and_a_dry_run_changes_nothing(settings):
    # given: 10 old sent rows, the default keep period, small batches
    settings.KAMI_OUTBOX_KEEP_DAYS, settings.KAMI_OUTBOX_PRUNE_BATCH = 30, 3
    make_rows(S.SENT, days_ago=31, count=10)
    make_rows(S.SENT, days_ago=1, count=2)
    # when: a dry run
    dry = outbox_prune(dry_run=True)
    # then: counted, nothing deleted
    assert (dry.deliveries, dry.attempts, dry.batches) == (10, 10, 4)
    assert OutboxMessage.objects.count() == 12
    # when: for real
    done = outbox_prune()
    # then: in four batches of at most 3, and again finds nothing
    assert (done.deliveries, done.batches) == (10, 4)
    assert OutboxMessage.objects.count() == 2
    assert outbox_prune().deliveries == 0


@pytest.mark.django_db
def test_nonsense_keep_periods_are_refused():
    with pytest.raises(BadInput, match="at least 1"):
        outbox_prune(keep_days=0)


@pytest.mark.django_db
def test_the_command_prints_a_summary_and_dry_runs(settings):
    # given
    make_rows(S.SENT, days_ago=10, count=4)
    make_rows(S.MANUAL, days_ago=10)
    out = StringIO()
    # when: a dry run keeping 7 days
    call_command("deliveries", "prune", "--days", "7", "--dry-run", stdout=out)
    # then
    assert "would delete 4 sent deliveries (and 4 attempt records)" in out.getvalue()
    assert OutboxMessage.objects.count() == 5
    # when: for real, with the default (30 days): nothing is old enough
    call_command("deliveries", "prune", stdout=out)
    assert "deleted 0 sent deliveries" in out.getvalue()
    # when: keeping 7 days
    call_command("deliveries", "prune", "--days", "7", "--batch", "3", stdout=out)
    assert "deleted 4 sent deliveries (and 4 attempt records)" in out.getvalue() and "in 2 batches" in out.getvalue()
    assert list(OutboxMessage.objects.values_list("status", flat=True)) == [S.MANUAL]
    # and: pruning turned off needs --days
    settings.KAMI_OUTBOX_KEEP_DAYS = 0
    with pytest.raises(CommandError, match="--days"):
        call_command("deliveries", "prune", stdout=out)


@pytest.mark.django_db
def test_worker_once_prunes(settings):
    make_rows(S.SENT, days_ago=40, count=2)
    out = StringIO()
    call_command("worker", "--once", stdout=out)
    assert "pruned: 2" in out.getvalue()
    assert not OutboxMessage.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_pruning_in_small_batches_never_holds_up_a_worker_delivering(server_db):
    # given: 1,200 old sent rows, and 60 deliveries due now
    make_rows(S.SENT, days_ago=60, count=1200)
    due = make_rows(S.PENDING, days_ago=0, count=60, prefix="due")
    errors: list[BaseException] = []
    report = {}

    def prune():
        try:
            report["prune"] = outbox_prune(keep_days=30, batch=25)
        except BaseException as exc:  # noqa: BLE001 — reported by the test
            errors.append(exc)
        finally:
            connection.close()

    def deliver(name: str):
        try:
            while run_once(name, limit=5):
                pass
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)
        finally:
            connection.close()

    # when: a prune and two workers run at the same time
    threads = [threading.Thread(target=prune)] + [threading.Thread(target=deliver, args=(f"w{i}",)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    # then: no error (no lock wait timeout, no deadlock), every due delivery sent once, the old rows gone
    assert not errors and not any(t.is_alive() for t in threads)
    assert report["prune"].deliveries == 1200 and report["prune"].batches == 48
    assert set(OutboxMessage.objects.values_list("id", "status", "attempts")) == {(i, S.SENT, 2) for i in due}
