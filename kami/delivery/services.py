"""Queueing side effects, and the delivery queue's staff actions. Nothing here sends: the worker
performs the rows after commit (DESIGN.md invariant 8).

The staff actions (retry now, mark handled) change one row under its lock
and write the audit log in the same short transaction. Closing a row by hand uses its own
terminal status, `handled` (not `sent`): the queue still tells what the worker delivered from what
a human took care of, and the note says how. Resending an order's keys crosses orders and
delivery, so it is fulfilment's (kami.fulfilment.resend).
"""
from __future__ import annotations

import hashlib
import logging

from django.conf import settings
from django.db import IntegrityError, transaction

from kami.audit.services import audit_record
from kami.core import clock
from kami.core.errors import BadInput, NotFound
from kami.delivery.alerts import ALERTS, admin_language, alert_channels, alert_render
from kami.delivery.models import OutboxMessage
from kami.delivery.wake import outbox_written
from kami.orders.selectors import orders_lookup
from kami.orders.services import order_event

log = logging.getLogger("kami.delivery")
S = OutboxMessage.Status
RETRYABLE = (S.PENDING, S.FAILED, S.MANUAL)  # what "retry now" takes
CLOSABLE = (S.FAILED, S.MANUAL)  # what "mark handled" takes
NOTE_MAX = 2000


def outbox_enqueue(*, kind: str, channel: str, target: str, dedupe_key: str, payload: dict | None = None) -> OutboxMessage | None:
    """Queue one side effect. The same `dedupe_key` twice queues it once (returns None). An email
    to no address (an order made in the Telegram bot without one) is not queued (returns None)."""
    if channel == "email" and not target:
        return None
    try:
        # A savepoint, so a duplicate leaves the caller's transaction usable.
        with transaction.atomic():
            row = OutboxMessage.objects.create(
                kind=kind, channel=channel, target=target, dedupe_key=dedupe_key[:191],
                payload=payload or {}, next_attempt_at=clock.now(), created_at=clock.now(),
            )
            outbox_written()  # wake the workers once this commits (a duplicate's savepoint drops it)
            return row
    except IntegrityError:
        return None


def order_keys_enqueue(*, order_id: int, email: str, resend: int = 0) -> OutboxMessage | None:
    """Queue an order's key delivery. Called once per order, by the transaction that fulfils it
    (the order row is locked and leaves its state there), so no savepoint is spent on dedupe;
    the unique dedupe key would still refuse a second row. `resend` n > 0: the n-th resend by
    staff (its own row, dedupe key and Message-ID). An order without an email (made in the
    Telegram bot without one) gets no email row: only the other places, and None is returned."""
    now = clock.now()
    if not email and not resend:
        order_keys_enqueue_elsewhere(order_id=order_id, now=now)
        return None
    dedupe_key, payload = f"order_keys:{order_id}:email", {"order_id": order_id}
    if resend:
        dedupe_key, payload = f"order_keys:{order_id}:resend:{resend}", {"order_id": order_id, "resend": resend}
    row = OutboxMessage.objects.create(kind="order_keys", channel="email", target=email, dedupe_key=dedupe_key,
                                       payload=payload, next_attempt_at=now, created_at=now)
    if not resend:
        order_keys_enqueue_elsewhere(order_id=order_id, now=now)
    else:
        outbox_written()
    return row


def order_keys_enqueue_elsewhere(*, order_id: int, now=None) -> None:
    """The order's key delivery to the places besides its email (the registered lookups below).
    Part of order_keys_enqueue; called alone by the set-based confirm (kami.fulfilment.confirm_sql),
    whose statement writes the email row itself."""
    orders_keys_enqueue_elsewhere(order_ids=[order_id], now=now)


def orders_keys_enqueue_elsewhere(*, order_ids: list[int], now=None) -> None:
    """order_keys_enqueue_elsewhere for several orders fulfilled in one transaction (a group
    commit's batch): each lookup reads once for all of them, and their rows go in one INSERT."""
    now = now or clock.now()
    outbox_written()  # both confirm paths come here: the workers are woken once the sale commits
    rows = [OutboxMessage(kind="order_keys", channel=channel, target=target[:254],
                          dedupe_key=f"order_keys:{order_id}:{channel}", payload={"order_id": order_id},
                          next_attempt_at=now, created_at=now)
            for lookup in _order_keys_recipients
            for order_id, places in sorted(lookup(order_ids).items()) for channel, target in places]
    if rows:
        OutboxMessage.objects.bulk_create(rows)
    for order_id in order_ids:
        for listener in _order_fulfilled_listeners:
            listener(order_id=order_id, now=now)


# Where an order's keys go besides its email: lookups [order_id] -> {order_id: [(channel, target)]}
# (orders with no such place may be left out), added at start by the edges that take orders
# elsewhere (kami.telegram: the buyer's chat). A registry, so this layer never imports an edge;
# one lookup is one indexed read in the fulfilling transaction, for a whole batch of orders.
_order_keys_recipients: list = []


def order_keys_recipients_register(lookup) -> None:
    if lookup not in _order_keys_recipients:
        _order_keys_recipients.append(lookup)


# Who else hears of a fulfilled order, in the fulfilling transaction: callables (order_id=, now=),
# added at start (kami.webhooks: order.paid / order.fulfilled to the merchant's endpoints). Both
# confirm paths (ORM and set-based), backfill and manual fulfilment all pass through
# order_keys_enqueue_elsewhere, so a listener hears every fulfilment once.
_order_fulfilled_listeners: list = []


def order_fulfilled_listeners_register(listener) -> None:
    if listener not in _order_fulfilled_listeners:
        _order_fulfilled_listeners.append(listener)


# Who else hears of an admin alert, in the alerting transaction: callables (event=, dedupe_key=,
# params=, text=), added at start (kami.webhooks turns awaiting_stock, flagged, low_stock and a
# failed key delivery into the merchant's webhook events). Called even when no alert channel is set.
_alert_listeners: list = []


def admin_alert_listeners_register(listener) -> None:
    if listener not in _alert_listeners:
        _alert_listeners.append(listener)


# What happens when a delivery of a given kind runs out of attempts, instead of the generic
# delivery_manual alert (kami.delivery.worker._escalate): kind -> callable (message, error), run in
# the worker's recording transaction. kami.webhooks disables the endpoint and alerts once.
_escalations: dict = {}


def delivery_escalation_register(kind: str, handler) -> None:
    _escalations[kind] = handler


def delivery_escalation_handler(kind: str):
    return _escalations.get(kind)


def admin_alert(*, event: str, dedupe_key: str, params: dict | None = None, text: str = "") -> list[OutboxMessage]:
    """Tell the merchant something needs a human, on every configured channel (email, Telegram,
    webhook; the log when none is). One row per (event, channel): the same event queued again —
    a repeated notification, a retry — adds nothing, so it alerts once per channel.

    The text is the catalogue entry `text` (default: the event) of kami.delivery.alerts, rendered
    with `params` in KAMI_ADMIN_LANGUAGE. An entry the catalogue lacks is sent as the event and its
    values, untranslated (and logged): an alert's wording never fails the caller's transaction.
    Returns the rows queued now."""
    key, params = text or event, params or {}
    if key in ALERTS:
        subject, body = alert_render(text=key, params=params)
    else:
        log.warning("admin alert %r is not in kami.delivery.alerts.ALERTS: sent untranslated; add it there", key)
        subject, body = f"{event}: {dedupe_key}", "\n".join(f"{k}: {v}" for k, v in params.items())
    event_id = _event_id(event, dedupe_key)
    payload = {"event": event, "id": event_id, "subject": subject, "body": body, "language": admin_language()}
    for listener in _alert_listeners:
        listener(event=event, dedupe_key=dedupe_key, params=params, text=key)
    queued = []
    for channel, target in alert_channels():
        row = outbox_enqueue(kind="admin_alert", channel=channel, target=target[:254],
                             dedupe_key=f"{event_id}:{channel}", payload=payload)
        if row is not None:
            queued.append(row)
    return queued


def _event_id(event: str, dedupe_key: str) -> str:
    """`alert:<event>:<key>`, short enough to take a `:<channel>` suffix within the 191-character
    unique column (a long key is replaced by its hash, so truncation never merges two events)."""
    event_id = f"alert:{event}:{dedupe_key}"
    if len(event_id) > 170:
        event_id = f"alert:{event[:60]}:sha256:{hashlib.sha256(dedupe_key.encode()).hexdigest()}"
    return event_id


def delivery_retry_now(*, message_id: int, actor: str, ip: str = "") -> OutboxMessage:
    """Make a pending, failed or manual delivery due now. It gets one more attempt: a row that was
    out of attempts goes back to `manual` if that attempt fails too (no second alert)."""
    with transaction.atomic():  # change and audit row together; the row lock keeps a worker's claim out meanwhile
        row = _locked(message_id)
        if row.status not in RETRYABLE:
            raise BadInput(_not_retryable(row))
        before = row.status
        row.status, row.next_attempt_at, row.lease_until = S.PENDING, clock.now(), None
        row.save(update_fields=["status", "next_attempt_at", "lease_until"])
        outbox_written()
        audit_record(actor=actor, action="delivery.retry", obj_type="delivery", obj_id=row.pk, ip=ip,
                     kind=row.kind, channel=row.channel, status_before=before, attempts=row.attempts)
    return row


def deliveries_retry_all(*, actor: str, ip: str = "", status: str = S.MANUAL) -> int:
    """"Retry now" for a whole backlog, once its cause is fixed (the mail server is back): every
    `manual` (or every `failed`) row becomes due now. They get the same due time, and the worker
    claims by due time, then id, so it sends them in the order they were queued. Each gets one more
    attempt, as with delivery_retry_now: a manual row that fails again returns to `manual` without
    a second alert. Returns how many rows were made due."""
    if status not in (S.MANUAL, S.FAILED):
        raise BadInput(f"status {status!r}: retry all takes the manual or the failed deliveries")
    with transaction.atomic():  # the change and its audit row together
        count = OutboxMessage.objects.filter(status=status).update(
            status=S.PENDING, next_attempt_at=clock.now(), lease_until=None, lease_token="")
        outbox_written()
        audit_record(actor=actor, action="delivery.retry_all", obj_type="delivery", obj_id=status, ip=ip,
                     status_before=status, count=count)
    return count


def delivery_mark_handled(*, message_id: int, note: str, actor: str, ip: str = "") -> OutboxMessage:
    """Close a failed or manual delivery a human dealt with (sent the keys by hand, fixed the
    cause elsewhere…): status `handled`, with the note, who and when. The worker never takes it again."""
    note = (note or "").strip()
    if not note:
        raise BadInput("note: say what was done (e.g. 'sent the order link by WeChat'); it is kept with the delivery")
    if len(note) > NOTE_MAX:
        raise BadInput(f"note: {len(note)} characters; keep it under {NOTE_MAX}")
    with transaction.atomic():  # change and audit row together, under the row lock
        row = _locked(message_id)
        if row.status not in CLOSABLE:
            raise BadInput(_not_closable(row))
        before = row.status
        row.status, row.note, row.handled_by, row.handled_at = S.HANDLED, note, (actor or "unknown")[:150], clock.now()
        row.lease_until = None
        row.save(update_fields=["status", "note", "handled_by", "handled_at", "lease_until"])
        audit_record(actor=actor, action="delivery.handled", obj_type="delivery", obj_id=row.pk, ip=ip,
                     kind=row.kind, channel=row.channel, status_before=before, note=note)
    return row


def order_link_request(*, email: str, order_no: str) -> None:
    """The lookup by order number and email. When both match one order, queue an email with a
    fresh order link to that order's own address: knowing the number and the email (as staff
    and anyone who saw an order list do) is not proof of owning the mailbox, so the keys go
    only where the key email went. Nothing is returned, so the caller cannot answer a hit
    differently from a miss. At most one link email per order per lookup window (the dedupe
    key): lookups cannot flood a buyer's inbox."""
    found = orders_lookup(email=email, order_no=order_no) if order_no else []
    if not found:
        return
    order = found[0]
    window = int(clock.now().timestamp()) // max(settings.KAMI_LOOKUP_WINDOW_SECONDS, 1)
    with transaction.atomic():  # the outbox row and the order's event together
        row = outbox_enqueue(kind="order_link", channel="email", target=order.email,
                             dedupe_key=f"order_link:{order.pk}:{window}", payload={"order_id": order.pk})
        if row is not None:
            order_event(order=order, kind="link_sent", message_id=row.pk)


def _locked(message_id: int) -> OutboxMessage:
    row = OutboxMessage.objects.select_for_update().filter(id=message_id).first()
    if row is None:
        raise NotFound(f"no delivery #{message_id}")
    return row


def _not_retryable(row: OutboxMessage) -> str:
    if row.status == S.SENT:
        when = f" at {row.sent_at:%Y-%m-%d %H:%M} UTC" if row.sent_at else ""
        return (f"delivery #{row.pk} was already sent{when}: there is nothing to retry; "
                "to email an order's keys again, resend the order's delivery")
    if row.status == S.SENDING:
        return f"delivery #{row.pk} is being sent by a worker right now: wait for the result, then retry if it fails"
    return f"delivery #{row.pk} was marked handled by {row.handled_by or 'someone'}: it is closed; nothing to retry"


def _not_closable(row: OutboxMessage) -> str:
    if row.status == S.SENT:
        return f"delivery #{row.pk} was sent: it needs no handling"
    if row.status == S.HANDLED:
        return f"delivery #{row.pk} was already marked handled by {row.handled_by or 'someone'}"
    if row.status == S.SENDING:
        return f"delivery #{row.pk} is being sent by a worker right now: wait for the result"
    return f"delivery #{row.pk} has not been tried yet: let the worker send it, or retry it now"
