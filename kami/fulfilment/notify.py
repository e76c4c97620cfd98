"""Taking in a gateway notification: store it raw, verify, confirm, acknowledge.

The row is written (in its own autocommit) before verification and survives whatever happens
after, so every notification, forged or real, can be looked at later (dj-stripe's lesson).
The acknowledgement says success only once the outcome is committed; a transient failure asks
the gateway to retry; a forgery is refused.
"""
from __future__ import annotations

import json
import logging
from decimal import Decimal

from django.core.exceptions import BadRequest, SuspiciousOperation
from django.db import DatabaseError
from django.http import Http404, HttpRequest, HttpResponse
from django.http.multipartparser import MultiPartParserError

from kami.core import clock
from kami.core.errors import NotFound, Retryable, VerificationFailed
from kami.fulfilment.confirm import Outcome, payment_confirm
from kami.payments.interface import Notice
from kami.payments.models import Notification
from kami.payments.registry import gateway_get

log = logging.getLogger("kami.notify")

_REDACTED = "[redacted]"
_AMOUNT_LIMIT = Decimal(10) ** 12  # Payment.amount: max_digits=14, decimal_places=2
_CENT = Decimal("0.01")
_HEADER_KEEP = ("content-type", "user-agent", "x-forwarded-for", "x-real-ip")


# What Django refuses to parse (too many fields, a broken multipart body, a form in a foreign
# charset): stored like anything else, then rejected, never a 500.
_MALFORMED = (SuspiciousOperation, BadRequest, MultiPartParserError)


def _text(value: str) -> str:
    return value.replace("\x00", "\\x00")  # PostgreSQL text and jsonb cannot hold NUL


def _params(request: HttpRequest) -> dict:
    """GET and POST parameters; a name sent more than once keeps all its values (as a list),
    so a stored forgery shows exactly what was sent."""
    merged: dict[str, list[str]] = {}
    for source in (request.GET, request.POST) if request.method == "POST" else (request.GET,):
        for name, values in source.lists():
            merged.setdefault(name, []).extend(values)
    return {name: values[0] if len(values) == 1 else values for name, values in merged.items()}


def _redact(gateway, request: HttpRequest) -> tuple[dict, str]:
    secret_names = {n.lower() for n in gateway.redact_fields}
    headers = {k: (_REDACTED if k.lower() in secret_names else _text(v)) for k, v in request.headers.items()
               if k.lower() in _HEADER_KEEP or k.lower().startswith(gateway.name.lower()) or k.lower() in secret_names}
    try:
        raw = request.body  # read first, so the form parser works from this copy
        params = _params(request)
    except _MALFORMED as exc:
        return headers, f"[unparsed request: {type(exc).__name__}]"
    if params:
        body = json.dumps({k: (_REDACTED if k.lower() in secret_names else v) for k, v in params.items()},
                          ensure_ascii=False, sort_keys=True)
    else:
        body = _text(raw[:65536].decode("utf-8", "backslashreplace"))
    return headers, body


def notification_handle(*, gateway_name: str, request: HttpRequest) -> HttpResponse:
    try:
        gateway = gateway_get(gateway_name)
    except NotFound:
        raise Http404("no such gateway") from None
    if request.method not in gateway.notify_methods:
        return HttpResponse(status=405)
    headers, body = _redact(gateway, request)
    row = Notification.objects.create(gateway=gateway_name, received_at=clock.now(), method=request.method,
                                      remote_addr=request.META.get("REMOTE_ADDR", "")[:64], headers=headers, body=body)
    try:
        notice = _checked(gateway.parse_notification(request))
    except (VerificationFailed, *_MALFORMED) as exc:
        error = str(exc) if isinstance(exc, VerificationFailed) else f"malformed request: {type(exc).__name__}"
        _finish(row, Notification.Result.REJECTED, error=_text(error))
        log.warning("notification %s from %s rejected: %s", row.pk, gateway_name, error)
        return gateway.acknowledge(False)
    except Retryable as exc:
        # Verifying needed the gateway (a certificate to fetch, a capture to make) and it did not
        # answer: not acknowledged, so the gateway sends the notification again.
        _finish(row, Notification.Result.ERROR, error=_text(f"gateway trouble: {exc}"))
        log.warning("notification %s from %s: gateway trouble, asking for a retry: %s", row.pk, gateway_name, exc)
        return gateway.acknowledge(False)
    row.verified, row.order_no, row.trade_no = True, notice.order_no[:64], notice.trade_no[:128]
    if not notice.paid:
        _finish(row, Notification.Result.IGNORED)
        return gateway.acknowledge(True)
    try:
        outcome = payment_confirm(gateway=gateway_name, notice=notice)
    except DatabaseError as exc:
        _finish(row, Notification.Result.ERROR, error=f"{type(exc).__name__}: {exc}"[:2000])
        log.exception("notification %s: confirm failed; the gateway will retry", row.pk)
        return gateway.acknowledge(False)
    _finish(row, Notification.Result(outcome.value))
    if outcome == Outcome.UNKNOWN_ORDER:
        log.warning("notification %s: verified but names unknown order %s", row.pk, notice.order_no[:64])
    return gateway.acknowledge(True)


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


def _finish(row: Notification, result: str, *, error: str = "") -> None:
    row.result, row.error = result, error
    row.save(update_fields=["result", "error", "verified", "order_no", "trade_no"])
