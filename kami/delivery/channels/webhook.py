"""The webhook channel: admin alerts POSTed as JSON to the merchant's own endpoint, signed.

    POST KAMI_ALERT_WEBHOOK_URL
    Content-Type: application/json
    Kami-Signature: t=<unix time>,v1=<hex HMAC-SHA256 of "<t>.<raw body>" with KAMI_ALERT_WEBHOOK_SECRET>

    {"event": "low_stock", "subject": "…", "body": "…", "at": "2026-11-27T16:00:00+00:00", "id": "alert:low_stock:…"}

The same scheme as Stripe's: the receiver recomputes the HMAC over the exact bytes it received
and refuses old timestamps (docs/delivery.md shows the check). `id` is the same on every retry and
on every channel, so a receiver can drop a repeat. A 2xx answer is success; anything else,
including a redirect (never followed), is retried with the delivery backoff, then `manual`.
URL and secret are read from settings when sending: the outbox row keeps only the host.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit

import httpx
from django.conf import settings

from kami.core import clock
from kami.delivery.channels import PermanentFailure, TemporaryFailure
from kami.delivery.models import OutboxMessage

TIMEOUT_SECONDS = 10
SIGNATURE_HEADER = "Kami-Signature"


class WebhookChannel:
    name = "webhook"

    def send(self, message: OutboxMessage) -> None:
        if message.kind != "admin_alert":
            raise PermanentFailure(f"the webhook channel carries admin alerts only, not {message.kind!r}")
        url = settings.KAMI_ALERT_WEBHOOK_URL
        secret = settings.KAMI_ALERT_WEBHOOK_SECRET
        if not url or not secret:
            raise PermanentFailure("KAMI_ALERT_WEBHOOK_URL and KAMI_ALERT_WEBHOOK_SECRET must both be set: "
                                   "set them, then retry this alert")
        body = webhook_body(message)
        headers = {"Content-Type": "application/json", "User-Agent": "Kami-Alerts/1",
                   SIGNATURE_HEADER: webhook_signature(secret=secret, body=body, timestamp=int(clock.now().timestamp()))}
        host = webhook_host(url)
        try:
            response = httpx.post(url, content=body, headers=headers, timeout=TIMEOUT_SECONDS, follow_redirects=False)
        except httpx.HTTPError as exc:
            raise TemporaryFailure(f"webhook: {type(exc).__name__} talking to {host}") from None
        if response.status_code // 100 != 2:
            raise TemporaryFailure(f"webhook {host} answered HTTP {response.status_code}")


def webhook_body(message: OutboxMessage) -> bytes:
    payload = message.payload or {}
    data = {"event": payload.get("event", ""), "subject": payload.get("subject", ""), "body": payload.get("body", ""),
            "at": message.created_at.isoformat(), "id": payload.get("id", f"outbox:{message.pk}")}
    return json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode()


def webhook_signature(*, secret: str, body: bytes, timestamp: int) -> str:
    """The `Kami-Signature` header value: t=<timestamp>,v1=<hex HMAC-SHA256 of b"<t>." + body>."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def webhook_host(url: str) -> str:
    """What may be shown and stored about the URL: its host and port (a path or query may hold a token)."""
    try:
        parts = urlsplit(url)
        return parts.hostname + (f":{parts.port}" if parts.port else "") if parts.hostname else "webhook"
    except ValueError:  # a port that is not a number
        return "webhook"


_calling = threading.local()  # the URL this thread is calling now (url_path_hidden)


@contextmanager
def url_path_hidden(url: str) -> Iterator[None]:
    """While this thread calls `url` (a merchant's webhook endpoint or mint URL), httpx's log lines
    show only its host, as for the alert webhook."""
    _calling.url = url
    try:
        yield
    finally:
        _calling.url = ""


class _HideWebhookPath(logging.Filter):
    """httpx logs every request URL at INFO; a webhook URL's path or query may carry a token
    (many chat services put one there), so only its host is logged: the alert webhook's, and the
    URL this thread is calling under url_path_hidden."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not isinstance(record.args, tuple):
            return True
        for url in (settings.KAMI_ALERT_WEBHOOK_URL if settings.configured else "", getattr(_calling, "url", "")):
            if url:
                shown = str(httpx.URL(url))  # as httpx prints it
                record.args = tuple(f"{webhook_host(url)}/…" if str(a) in (url, shown) else a for a in record.args)
        return True


if not any(isinstance(f, _HideWebhookPath) for f in logging.getLogger("httpx").filters):
    logging.getLogger("httpx").addFilter(_HideWebhookPath())
