"""Queueing side effects. Called inside the caller's transaction; the worker performs them
after commit (DESIGN.md invariant 8)."""
from __future__ import annotations

import logging

from django.conf import settings
from django.db import IntegrityError, transaction

from kami.core import clock
from kami.delivery.models import OutboxMessage

log = logging.getLogger("kami.delivery")


def outbox_enqueue(*, kind: str, channel: str, target: str, dedupe_key: str, payload: dict | None = None) -> OutboxMessage | None:
    """Queue one side effect. The same `dedupe_key` twice queues it once (returns None)."""
    try:
        # A savepoint, so a duplicate leaves the caller's transaction usable.
        with transaction.atomic():
            return OutboxMessage.objects.create(
                kind=kind, channel=channel, target=target, dedupe_key=dedupe_key[:191],
                payload=payload or {}, next_attempt_at=clock.now(), created_at=clock.now(),
            )
    except IntegrityError:
        return None


def order_keys_enqueue(*, order_id: int, email: str) -> None:
    """Queue an order's key delivery. Called once per order, by the transaction that fulfils it
    (the order row is locked and leaves its state there), so no savepoint is spent on dedupe;
    the unique dedupe key would still refuse a second row."""
    now = clock.now()
    OutboxMessage.objects.create(kind="order_keys", channel="email", target=email, dedupe_key=f"order_keys:{order_id}:email",
                                 payload={"order_id": order_id}, next_attempt_at=now, created_at=now)


def admin_alert(*, event: str, dedupe_key: str, subject: str, body: str) -> None:
    """Tell the merchant something needs a human. One alert per event (dedupe_key), not per retry.
    Without KAMI_ADMIN_EMAIL the alert goes to the log channel (and stays visible in the outbox)."""
    target = settings.KAMI_ADMIN_EMAIL
    outbox_enqueue(
        kind="admin_alert", channel="email" if target else "log", target=target or "log",
        dedupe_key=f"alert:{event}:{dedupe_key}", payload={"event": event, "subject": subject, "body": body},
    )
