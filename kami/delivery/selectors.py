"""Reading the outbox for people: the delivery queue of the back office."""
from __future__ import annotations

from django.db.models import OuterRef, QuerySet, Subquery

from kami.core.errors import BadInput
from kami.delivery import backoff
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
