"""Reading the outbox for people: the delivery queue of the back office, and whether deliveries
are going out at all (`delivery_health`, for `kami doctor` and the dashboard)."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db.models import Count, Min, OuterRef, Q, QuerySet, Subquery

from kami.core import clock
from kami.core.errors import BadInput
from kami.delivery import backoff
from kami.delivery.heartbeats import WorkerSeen, workers_seen
from kami.delivery.models import DeliveryAttempt, OutboxMessage

S = OutboxMessage.Status
OPEN = (S.PENDING, S.SENDING, S.FAILED, S.MANUAL)  # not finished: sent or handled rows are done
STATUS_FILTERS = ("open", "pending", "sending", "retrying", "failed", "manual", "sent", "handled")


def deliveries_list(*, status: str | None = None, kind: str | None = None, limit: int = 200) -> QuerySet:
    """Outbox rows, newest first, each with `last_error` and `last_attempt_at`.

    status: None or "open" — everything not finished (pending, sending, failed, manual);
    "retrying" — failed with attempts left (a retry is scheduled at `next_attempt_at`);
    "failed", "pending", "sending", "manual", "sent", "handled" — that status. ("failed" holds
    the retrying rows, plus any out of attempts after the schedule was shortened: their next
    attempt is the last.)
    kind: order_keys, order_refunded, admin_alert, … (None: all)."""
    rows = OutboxMessage.objects.all()
    if status in (None, "", "open"):
        rows = rows.filter(status__in=OPEN)
    elif status == "retrying":
        rows = rows.filter(status=S.FAILED, attempts__lt=backoff.max_attempts(backoff.schedule()))
    elif status in STATUS_FILTERS:
        rows = rows.filter(status=status)
    else:
        raise BadInput(f"unknown delivery status filter {status!r}: use one of {', '.join(STATUS_FILTERS)}")
    if kind:
        rows = rows.filter(kind=kind)
    last_attempt = DeliveryAttempt.objects.filter(message=OuterRef("pk")).order_by("-at", "-id").values("at")[:1]
    rows = rows.annotate(last_attempt_at=Subquery(last_attempt)).order_by("-created_at", "-id")
    return rows[:max(0, int(limit))]


OVERDUE_AFTER = timedelta(minutes=2)  # a delivery due this long and not taken means no worker is taking them


@dataclass(frozen=True)
class DeliveryHealth:
    """Whether deliveries are going out: who runs (the workers' heartbeats) and what waits past its
    time. A worker that beats but does not deliver is no better than none, so both count."""

    workers: tuple[WorkerSeen, ...]  # every heartbeat row, most recently seen first
    overdue: int  # due more than OVERDUE_AFTER ago, not leased to a worker, not sent
    oldest_overdue_at: datetime | None
    last_attempt_at: datetime | None  # the last delivery attempt of any worker, None if none ever

    @property
    def running(self) -> tuple[WorkerSeen, ...]:
        return tuple(w for w in self.workers if w.running)

    @property
    def last_seen(self) -> WorkerSeen | None:
        return self.workers[0] if self.workers else None


def delivery_health(*, now: datetime | None = None) -> DeliveryHealth:
    """Three short reads: the heartbeat rows (a handful), the overdue deliveries (the `(status,
    next_attempt_at)` index), the newest attempt row (the primary key's end: attempts are written
    as they happen, so no scan of a busy shop's attempts)."""
    now = now or clock.now()
    waiting = OutboxMessage.objects.filter(status__in=(S.PENDING, S.FAILED), next_attempt_at__lt=now - OVERDUE_AFTER)
    waiting = waiting.filter(Q(lease_until__isnull=True) | Q(lease_until__lt=now))
    overdue = waiting.aggregate(n=Count("id"), oldest=Min("next_attempt_at"))
    last = DeliveryAttempt.objects.order_by("-id").values_list("at", flat=True).first()
    return DeliveryHealth(workers=tuple(workers_seen(now=now)), overdue=overdue["n"],
                          oldest_overdue_at=overdue["oldest"], last_attempt_at=last)
