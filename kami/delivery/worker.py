"""The delivery worker (DESIGN.md §2 "Worker", invariants 7 and 8).

    claim (short txn, SKIP LOCKED, lease) → commit → send (no txn) → record (short txn, only
    if the lease is still ours) → sent | failed + backoff | manual + admin alert

Several workers on several machines may run at once: a row is leased to one worker at a time,
and a worker that died mid-delivery is noticed when its lease runs out. That counts as an
attempt (its outcome is unknown), so even a message that kills every worker ends `manual`.
"""
from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Callable
from datetime import datetime, timedelta

from django.conf import settings
from django.db import close_old_connections, transaction
from django.db.models import QuerySet

from kami.core import clock
from kami.core.errors import NotFound
from kami.delivery import backoff
from kami.delivery.channels import PermanentFailure, TemporaryFailure, channel_get
from kami.delivery.models import DeliveryAttempt, OutboxMessage
from kami.delivery.services import admin_alert
from kami.orders.models import Order

log = logging.getLogger("kami.delivery.worker")
S = OutboxMessage.Status
LEASE_EXPIRED = "lease expired: the worker stopped mid-delivery, outcome unknown"


def lease_seconds() -> int:
    return int(getattr(settings, "KAMI_DELIVERY_LEASE_SECONDS", 300))


def due_querysets(now: datetime) -> list[QuerySet]:
    """What a claim takes, in this order: rows whose worker died mid-delivery (rare), new
    deliveries, then retries. Three queries, not one with OR: each walks the (status,
    next_attempt_at) index in order and stops at the limit. An OR or a mixed ORDER BY makes
    MariaDB sort, and lock every due row while doing so, so the other workers found nothing."""
    rows = OutboxMessage.objects.select_for_update(skip_locked=True)
    return [
        rows.filter(status=S.SENDING, lease_until__lt=now).order_by("next_attempt_at", "id"),
        rows.filter(status=S.PENDING, next_attempt_at__lte=now).order_by("next_attempt_at", "id"),
        rows.filter(status=S.FAILED, next_attempt_at__lte=now).order_by("next_attempt_at", "id"),
    ]


def outbox_claim(*, worker_id: str, limit: int = 50) -> list[OutboxMessage]:
    """Lease up to `limit` due messages to this worker and commit, before anything is sent.
    Each returned message carries `claimed_status`, the status it had before the claim."""
    now = clock.now()
    lease = now + timedelta(seconds=lease_seconds())
    plan = backoff.schedule()
    claimed: list[OutboxMessage] = []
    with transaction.atomic():  # the claim: rows locked (others' skipped) only for as long as it takes to lease them
        rows: list[OutboxMessage] = []
        for due in due_querysets(now):
            if len(rows) < limit:
                rows += due[:limit - len(rows)]
        for row in rows:
            row.claimed_status = row.status
            if row.status == S.SENDING:  # its worker died: count that attempt, so retries stay bounded
                row.attempts += 1
                row.claimed_status = S.FAILED
                DeliveryAttempt.objects.create(message=row, at=now, ok=False, error=LEASE_EXPIRED, worker=worker_id[:100])
                if row.attempts >= backoff.max_attempts(plan):
                    OutboxMessage.objects.filter(id=row.id).update(
                        status=S.MANUAL, attempts=row.attempts, lease_until=None, last_error=LEASE_EXPIRED)
                    log.error("outbox #%s %s via %s: manual (attempt %s): %s", row.id, row.kind, row.channel,
                              row.attempts, LEASE_EXPIRED)
                    _escalate(row, LEASE_EXPIRED)
                    continue
                OutboxMessage.objects.filter(id=row.id).update(attempts=row.attempts)
            row.status, row.lease_until = S.SENDING, lease
            claimed.append(row)
        OutboxMessage.objects.filter(id__in=[m.id for m in claimed]).update(status=S.SENDING, lease_until=lease)
    return claimed


def outbox_release(messages: list[OutboxMessage]) -> int:
    """Give back leased messages this worker will not perform (shutting down), so others can take
    them now instead of after the lease runs out."""
    released = 0
    for m in messages:
        released += OutboxMessage.objects.filter(id=m.id, status=S.SENDING, lease_until=m.lease_until).update(
            status=getattr(m, "claimed_status", S.FAILED), lease_until=None)
    return released


def outbox_perform(message: OutboxMessage, *, worker_id: str) -> str:
    """Send one claimed message and record the result. Returns the outcome:
    sent | failed (retry scheduled) | manual | lost (the lease passed to another worker)."""
    if transaction.get_connection().in_atomic_block:
        raise RuntimeError("outbox_perform must run outside a transaction: nothing slow while holding locks")
    if not _lease_renew(message):
        log.info("outbox #%s %s: lease taken over by another worker, skipped", message.id, message.kind)
        return "lost"
    error, permanent = None, False
    try:
        channel_get(message.channel).send(message)
    except (PermanentFailure, NotFound) as exc:
        error, permanent = _short(exc), True
    except TemporaryFailure as exc:
        error = _short(exc)
    except Exception as exc:  # noqa: BLE001 — an unexpected error is retried like any other
        error = _short(exc)
        log.warning("outbox #%s %s via %s: unexpected %s", message.id, message.kind, message.channel,
                    type(exc).__name__, exc_info=True)
    outcome = _record(message, worker_id=worker_id, error=error, permanent=permanent)
    # lost here means our lease ran out mid-send: another worker may have delivered it as well
    level = {"sent": logging.INFO, "failed": logging.WARNING, "lost": logging.WARNING}.get(outcome, logging.ERROR)
    log.log(level, "outbox #%s %s via %s: %s (attempt %s)%s", message.id, message.kind, message.channel, outcome,
            message.attempts, f": {error}" if error else "")
    return outcome


def _lease_renew(message: OutboxMessage) -> bool:
    """Extend our lease just before sending; False when another worker has re-claimed the row."""
    lease = clock.now() + timedelta(seconds=lease_seconds())
    mine = OutboxMessage.objects.filter(id=message.id, status=S.SENDING, lease_until=message.lease_until).update(
        lease_until=lease)
    if mine:
        message.lease_until = lease
    return bool(mine)


def _record(message: OutboxMessage, *, worker_id: str, error: str | None, permanent: bool) -> str:
    now = clock.now()
    plan = backoff.schedule()
    attempts = message.attempts + 1
    if error is None:
        fields = {"status": S.SENT, "sent_at": now, "last_error": ""}
    elif permanent or attempts >= backoff.max_attempts(plan):
        fields = {"status": S.MANUAL, "last_error": error}
    else:
        fields = {"status": S.FAILED, "last_error": error,
                  "next_attempt_at": now + timedelta(seconds=backoff.delay(attempts, plan))}
    fields.update(attempts=attempts, lease_until=None, message_id=message.message_id)
    with transaction.atomic():  # the result and its attempt row together; applies only while the lease is ours
        mine = OutboxMessage.objects.filter(id=message.id, status=S.SENDING, lease_until=message.lease_until).update(**fields)
        note = (error or "") if mine else f"late, lease lost: {error or 'sent'}"
        DeliveryAttempt.objects.create(message_id=message.id, at=now, ok=error is None, error=note, worker=worker_id[:100])
        if not mine:
            return "lost"
        for name, value in fields.items():
            setattr(message, name, value)
        if message.status == S.MANUAL:
            _escalate(message, error or "")
    return str(message.status)


def _escalate(message: OutboxMessage, error: str) -> None:
    """Out of attempts: a human is told (inside the caller's transaction, through the outbox)."""
    if message.kind == "admin_alert":  # never alert about an alert: the log is the last resort
        log.error("outbox #%s: admin alert %r could not be delivered (%s); it stays in the outbox as manual",
                  message.id, (message.payload or {}).get("subject", ""), error)
        return
    params = {"message_id": message.id, "kind": message.kind, "channel": message.channel, "target": message.target,
              "attempts": message.attempts, "error": error}
    text = "delivery_manual"
    if message.kind == "order_keys":
        order_id = (message.payload or {}).get("order_id")
        params["order_no"] = Order.objects.filter(id=order_id).values_list("order_no", flat=True).first() or f"#{order_id}"
        text = "delivery_manual.order_keys"
    admin_alert(event="delivery_manual", dedupe_key=str(message.id), text=text, params=params)


def _short(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    if not isinstance(exc, (PermanentFailure, TemporaryFailure, NotFound)):
        text = f"{type(exc).__name__}: {text}"
    return " ".join(text.split())[:300]


def run_pass(*, worker_id: str, limit: int = 50, stop_event: threading.Event | None = None) -> Counter:
    """One claim and the deliveries it got; outcome counts. Stops between messages when
    `stop_event` is set, releasing what it has not started."""
    messages = outbox_claim(worker_id=worker_id, limit=limit)
    outcomes: Counter = Counter()
    for i, message in enumerate(messages):
        if stop_event is not None and stop_event.is_set():
            outbox_release(messages[i:])
            break
        try:
            outcomes[outbox_perform(message, worker_id=worker_id)] += 1
        except BaseException:
            _release_quietly(messages[i + 1:])
            raise
    return outcomes


def _release_quietly(messages: list[OutboxMessage]) -> None:
    """Best effort while failing anyway: what is not released comes back when its lease expires."""
    try:
        outbox_release(messages)
    except Exception:  # noqa: BLE001 — the original error matters more
        log.warning("could not release %d claimed messages; they return when their lease expires", len(messages))


def run_once(worker_id: str, limit: int = 50, stop_event: threading.Event | None = None) -> int:
    """One pass; the number of messages performed."""
    return sum(run_pass(worker_id=worker_id, limit=limit, stop_event=stop_event).values())


def run_forever(worker_id: str, poll_seconds: float, stop_event: threading.Event,
                on_pass: Callable[[], None] | None = None, limit: int = 50) -> None:
    """Deliver until `stop_event` is set. `on_pass` runs after every pass (the command hangs
    its periodic sweep there). Waits `poll_seconds` whenever the queue is drained."""
    log.info("worker %s started (poll %ss)", worker_id, poll_seconds)
    while not stop_event.is_set():
        close_old_connections()  # a long-lived process: drop a connection the database closed
        done = 0
        try:
            done = run_once(worker_id, limit=limit, stop_event=stop_event)
        except Exception:  # noqa: BLE001 — a database hiccup must not kill the worker
            log.exception("worker %s: delivery pass failed; retrying in %ss", worker_id, poll_seconds)
        if on_pass is not None and not stop_event.is_set():
            try:
                on_pass()
            except Exception:  # noqa: BLE001
                log.exception("worker %s: periodic task failed", worker_id)
        if done < limit:
            stop_event.wait(poll_seconds)
    log.info("worker %s stopped", worker_id)
