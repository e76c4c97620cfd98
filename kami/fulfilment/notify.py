"""Taking in a gateway notification: store it raw, verify, confirm, acknowledge.

It speaks no HTTP: an edge hands it the request as plain values (`Inbound`: method, headers,
query, body, sender address) and turns the `Reply` it gives back into its response, so the
notify view, the Telegram webhook, the bot's long polling and the sandbox's pay button all take
the same path without a fake request.

Every notification, forged or real, is kept as a row that can be looked at later (dj-stripe's
lesson). Verification needs no database, so the row is written once, with its result: in its
own autocommit when refused, ignored or failed, and inside the confirm transaction when paid
(issue 9: one commit per notification instead of three). A confirm that rolls back still leaves
the row, written again on its own with the error.
The acknowledgement says success only once the outcome is committed; a transient failure asks
the gateway to retry; a forgery is refused.

What a forgery can cost is bounded: the row of a notification that does not verify holds at most
`STORED_BODY_MAX` characters of the body (with a note of the full size; a notification that
verifies is kept whole), and a sender IP past KAMI_NOTIFY_REJECTED_LIMIT
rejections in 10 minutes is no longer stored when refused: its notifications are still verified (so a
real gateway behind the same address is never locked out) and stored only if they verify. The
worker's sweep prunes rejected rows after KAMI_NOTIFY_REJECTED_KEEP_DAYS.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from decimal import Decimal

from django.conf import settings
from django.db import DatabaseError, InterfaceError, OperationalError

from kami.core import clock
from kami.core.errors import Retryable, VerificationFailed, storage_full
from kami.core.ratelimit import ratelimit_hit, ratelimit_spent
from kami.fulfilment.batch import payment_confirm_grouped
from kami.fulfilment.confirm import Outcome
from kami.payments.interface import Gateway, Inbound, Notice, Reply
from kami.payments.models import Notification
from kami.payments.registry import gateway_cached, gateway_class, gateway_get

log = logging.getLogger("kami.notify")

_REDACTED = "[redacted]"
_AMOUNT_LIMIT = Decimal(10) ** 12  # Payment.amount: max_digits=14, decimal_places=2
_CENT = Decimal("0.01")
_HEADER_KEEP = ("content-type", "user-agent", "x-forwarded-for", "x-real-ip")
STORED_BODY_MAX = 64 * 1024  # characters of an unverified body kept (a verified one is kept whole)
_HEADER_MAX = 4096  # characters of each kept header (signatures fit: RSA-4096 in base64 is 684)
REJECTED_WINDOW = 600  # seconds: KAMI_NOTIFY_REJECTED_LIMIT counts rejections per sender IP in this window


def _text(value: str) -> str:
    return value.replace("\x00", "\\x00")  # PostgreSQL text and jsonb cannot hold NUL


def _params(inbound: Inbound) -> dict:
    """Query and form parameters; a name sent more than once keeps all its values (as a list),
    so a stored forgery shows exactly what was sent."""
    merged: dict[str, list[str]] = {}
    for name, value in inbound.params():
        merged.setdefault(name, []).append(value)
    return {name: values[0] if len(values) == 1 else values for name, values in merged.items()}


def _redact(gateway, inbound: Inbound) -> tuple[dict, str]:
    secret_names = {n.lower() for n in gateway.redact_fields}
    headers = {k: (_REDACTED if k.lower() in secret_names else _text(v[:_HEADER_MAX]))
               for k, v in inbound.headers.items()
               if k.lower() in _HEADER_KEEP or k.lower().startswith(gateway.name.lower()) or k.lower() in secret_names}
    try:
        params = _params(inbound)
    except VerificationFailed as exc:  # too many fields, a multipart body, a form in another charset
        return headers, f"[unparsed request: {exc}]"
    if params:
        body = json.dumps({k: (_REDACTED if k.lower() in secret_names else v) for k, v in params.items()},
                          ensure_ascii=False, sort_keys=True)
    else:
        body = _text(inbound.body.decode("utf-8", "backslashreplace"))
    return headers, body


def _capped(body: str) -> str:
    """What is stored before verification: the first STORED_BODY_MAX characters and a note."""
    if len(body) <= STORED_BODY_MAX:
        return body
    return f"{body[:STORED_BODY_MAX]}\n[… cut: {len(body)} characters in all, kept whole only if it verifies]"


def notification_handle(*, gateway_name: str, inbound: Inbound) -> Reply:
    """Take one notification; the Reply is what the gateway must be answered. NotFound when no
    such gateway is enabled (the edge answers 404); 405 for a method the protocol never uses.
    The database unreachable at any step (a restart, a failover) answers the gateway's own
    "retry": nothing was acknowledged, so it sends the notification again and a later try
    completes the order. Never a success, never a bare 500."""
    try:
        return _notification_take(gateway_name=gateway_name, inbound=inbound)
    except (OperationalError, InterfaceError) as exc:
        return _database_down(gateway_name, exc)


def _database_down(gateway_name: str, exc: DatabaseError) -> Reply:
    full = storage_full(exc)  # a full disk says where and what to free, not "unavailable"
    if full is not None:
        log.error("notification from %s: %s; asking the gateway to retry", gateway_name, full)
    else:
        log.warning("notification from %s: database unavailable (%s); asking the gateway to retry", gateway_name,
                    type(exc).__name__)
    return gateway_class(gateway_name)(config={}, secrets={}).acknowledge(False)


def _notification_take(*, gateway_name: str, inbound: Inbound) -> Reply:
    """Verify first (no database), then store: a refused or failed notification is written in its
    own autocommit, a confirmed one inside the confirm transaction (one commit in all). The row
    is never lost: if the confirm rolls back, it is written on its own with the error; if the
    process dies mid-confirm, nothing was acknowledged and the gateway sends it again."""
    gateway = gateway_get(gateway_name)  # NotFound: the edge's 404
    if inbound.method not in gateway.notify_methods:
        return Reply(status_code=405)
    headers, body = _redact(gateway, inbound)
    row = _row(gateway_name, inbound, headers, body)
    try:
        notice = _checked(gateway.parse_notification(inbound))
    except VerificationFailed as exc:
        error = str(exc)
        if _refused_stored(row, Notification.Result.REJECTED, error=_text(error), counted=True):
            log.warning("notification %s from %s rejected: %s", row.pk, gateway_name, error)
        return gateway.acknowledge(False)
    except Retryable as exc:
        # Verifying needed the gateway (a certificate to fetch, a capture to make) and it did not
        # answer: not acknowledged, so the gateway sends the notification again.
        if _refused_stored(row, Notification.Result.ERROR, error=_text(f"gateway trouble: {exc}")):
            log.warning("notification %s from %s: gateway trouble, asking for a retry: %s", row.pk, gateway_name, exc)
        return gateway.acknowledge(False)
    except Exception as exc:  # a bug in a gateway module: the raw row is still kept, then the 500
        _finish(row, Notification.Result.ERROR, error=_text(f"unexpected: {type(exc).__name__}: {exc}"[:2000]))
        raise
    ready = Ready(gateway_name=gateway_name, gateway=gateway, row=_verified(row, notice, body), notice=notice)
    if not notice.paid:
        _finish(row, Notification.Result.IGNORED)
        return gateway.acknowledge(True)
    try:
        # Through the process's group commit (kami/fulfilment/batch.py): the row is written in
        # whichever transaction confirms it, afresh each time (a batch that rolled back runs again alone).
        outcome = payment_confirm_grouped(gateway=gateway_name, notice=notice, record=ready.record)
    except DatabaseError as exc:
        return ready_failed(ready, exc)
    return ready_confirmed(ready, outcome)


@dataclass(frozen=True)
class Ready:
    """A verified payment, its raw row not yet written: what the confirm takes. `record` gives the
    row as the confirm's transaction writes it, with the outcome, afresh each time it is asked (a
    batch that rolled back runs again alone)."""

    gateway_name: str
    gateway: Gateway
    row: Notification
    notice: Notice

    def record(self, outcome: Outcome) -> Notification:
        return _prepared(_unsaved(self.row), Notification.Result(outcome.value))


def notification_ready(*, gateway_name: str, inbound: Inbound) -> Ready | None:
    """For an edge that confirms on an event loop (kami/asgi.py): the notification as a verified
    payment, taken with no database and no network, or None when it is anything else — the
    gateway's account not in this process's cache, a gateway that verifies over the network, a
    method it never uses, a notification that does not verify or is not a payment. The edge hands
    a None to `notification_handle`, which decides each such case exactly as for every other edge."""
    gateway = gateway_cached(gateway_name)
    if gateway is None or not gateway.verifies_offline or inbound.method not in gateway.notify_methods:
        return None
    received_at = clock.now()
    try:
        notice = _checked(gateway.parse_notification(inbound))
    except Exception:  # refused, or a gateway module's bug: the usual path verifies again, stores and answers
        return None
    if not notice.paid:
        return None
    headers, body = _redact(gateway, inbound)
    row = _row(gateway_name, inbound, headers, body, received_at=received_at)
    return Ready(gateway_name=gateway_name, gateway=gateway, row=_verified(row, notice, body), notice=notice)


def ready_confirmed(ready: Ready, outcome: Outcome) -> Reply:
    if outcome == Outcome.UNKNOWN_ORDER:
        log.warning("notification %s: verified but names unknown order %s", ready.row.pk, ready.notice.order_no[:64])
    return ready.gateway.acknowledge(True)


def ready_failed(ready: Ready, exc: DatabaseError) -> Reply:
    """The confirm failed and rolled back the row's INSERT with it: write the row again, alone,
    with the error, and ask the gateway to retry. Database access: call it where a request may
    use the database (a thread, not an event loop)."""
    try:
        _finish(_unsaved(ready.row), Notification.Result.ERROR, error=f"{type(exc).__name__}: {exc}"[:2000])
    except (OperationalError, InterfaceError) as down:
        return _database_down(ready.gateway_name, down)
    log.error("notification %s: confirm failed; the gateway will retry", ready.row.pk, exc_info=exc)
    return ready.gateway.acknowledge(False)


def _row(gateway_name: str, inbound: Inbound, headers: dict, body: str, *, received_at=None) -> Notification:
    return Notification(gateway=gateway_name, received_at=received_at or clock.now(), method=inbound.method,
                        remote_addr=inbound.remote_addr[:64], headers=headers, body=_capped(body))


def _verified(row: Notification, notice: Notice, body: str) -> Notification:
    row.verified, row.order_no, row.trade_no = True, notice.order_no[:64], notice.trade_no[:128]
    row.body = body  # verified: the raw body is kept whole
    return row


def _refused_stored(row: Notification, result: str, *, error: str, counted: bool = False) -> bool:
    """Store a notification that did not verify, unless its sender IP is past
    KAMI_NOTIFY_REJECTED_LIMIT rejections in REJECTED_WINDOW: then it is only counted (a flood of
    forgeries costs no rows). Rejections (`counted`) add to the count. True when stored."""
    limit = {"scope": f"notify-rejected:{row.gateway}", "identity": row.remote_addr,
             "limit": settings.KAMI_NOTIFY_REJECTED_LIMIT, "window": REJECTED_WINDOW}
    flooding = ratelimit_spent(**limit)
    if counted:
        ratelimit_hit(**limit)
    if flooding:
        return False
    _finish(row, result, error=error)
    return True


def _checked(notice: Notice) -> Notice:
    """What every gateway must give, in a shape every engine stores and compares the same way:
    identifiers as printable text that fits its column (Order.order_no 32, Payment.trade_no 128),
    an amount that fits Payment.amount (14 digits, 2 decimals). Otherwise PostgreSQL and MariaDB
    refuse the row (the gateway retries forever) while SQLite keeps it, or a rounded copy."""
    for name, value, limit in (("order number", notice.order_no, 64), ("trade number", notice.trade_no, 128)):
        if not isinstance(value, str) or not value or len(value) > limit or not value.isprintable():
            raise VerificationFailed(f"malformed notification: the {name} must be printable text of 1 to {limit} characters")
    amount = notice.amount
    if not (isinstance(amount, Decimal) and amount.is_finite() and abs(amount) < _AMOUNT_LIMIT
            and amount == amount.quantize(_CENT)):
        raise VerificationFailed(f"malformed notification: amount {str(amount)[:40]} is not a price Kami can hold "
                                 "(at most 12 digits before the point and 2 after)")
    return notice


def _unsaved(row: Notification) -> Notification:
    """The row as never written: its INSERT may have rolled back with a confirm that runs again."""
    row.pk, row._state.adding = None, True
    return row


def _prepared(row: Notification, result: str, *, error: str = "") -> Notification:
    """The row with its result and how long deciding it took, unsaved: the confirm writes it in its
    transaction (one INSERT)."""
    row.result, row.error = result, error
    row.handled_ms = max(0, round((clock.now() - row.received_at).total_seconds() * 1000))  # 0: a clock stepped back
    return row


def _finish(row: Notification, result: str, *, error: str = "") -> None:
    """Write the row once, with its result, in its own autocommit."""
    _prepared(row, result, error=error).save()
