"""Taking in a gateway notification: store it raw, verify, confirm, acknowledge.

The row is written (in its own autocommit) before verification and survives whatever happens
after, so every notification, forged or real, can be looked at later (dj-stripe's lesson).
The acknowledgement says success only once the outcome is committed; a transient failure asks
the gateway to retry; a forgery is refused.
"""
from __future__ import annotations

import json
import logging

from django.db import DatabaseError
from django.http import Http404, HttpRequest, HttpResponse

from kami.core import clock
from kami.core.errors import NotFound, VerificationFailed
from kami.fulfilment.confirm import Outcome, payment_confirm
from kami.payments.models import Notification
from kami.payments.registry import gateway_get

log = logging.getLogger("kami.notify")

_REDACTED = "[redacted]"
_HEADER_KEEP = ("content-type", "user-agent", "x-forwarded-for", "x-real-ip")


def _redact(gateway, request: HttpRequest) -> tuple[dict, str]:
    secret_names = {n.lower() for n in gateway.redact_fields}
    headers = {k: (_REDACTED if k.lower() in secret_names else v) for k, v in request.headers.items()
               if k.lower() in _HEADER_KEEP or k.lower().startswith(gateway.name.lower()) or k.lower() in secret_names}
    params = {**request.GET.dict(), **(request.POST.dict() if request.method == "POST" else {})}
    if params:
        body = json.dumps({k: (_REDACTED if k.lower() in secret_names else v) for k, v in params.items()},
                          ensure_ascii=False, sort_keys=True)
    else:
        body = request.body[:65536].decode("utf-8", "replace")
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
        notice = gateway.parse_notification(request)
    except VerificationFailed as exc:
        _finish(row, Notification.Result.REJECTED, error=str(exc))
        log.warning("notification %s from %s rejected: %s", row.pk, gateway_name, exc)
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


def _finish(row: Notification, result: str, *, error: str = "") -> None:
    row.result, row.error = result, error
    row.save(update_fields=["result", "error", "verified", "order_no", "trade_no"])
