"""The `merchant_webhook` delivery channel: one event POSTed to one endpoint, signed the Standard
Webhooks way (kami.webhooks.signing), each try logged as a WebhookAttempt (status, time, an
excerpt of the answer).

    POST <endpoint url>
    content-type: application/json
    webhook-id: msg_…   webhook-timestamp: 1733430000   webhook-signature: v1,… [v1,… during a rotation]

    {"type": "order.fulfilled", "timestamp": "2026-12-05T21:00:00+00:00", "data": {"order": {…}}}

A 2xx answer is success; anything else, a redirect (never followed) or no answer is retried with
the channel's backoff (settings.KAMI_DELIVERY_BACKOFF_BY_CHANNEL, over days); out of attempts,
the endpoint is disabled (kami.webhooks.failures). The connection goes only to a public address
checked as it is made (kami.webhooks.egress); any other fails at once, for good, the same way.

Per order, in order: an event is not sent to an endpoint while an earlier event of the same order
for that endpoint is still on its way (pending, sending or retrying); it is deferred, without
spending an attempt, until just after that one's next try (kami.delivery.channels.Deferred).
"""
from __future__ import annotations

import json
import time
from datetime import datetime, timedelta

import httpx

from kami.core import clock
from kami.delivery.channels import Deferred, PermanentFailure, TemporaryFailure
from kami.delivery.channels.webhook import url_path_hidden, webhook_host
from kami.delivery.models import OutboxMessage
from kami.orders.models import OrderKey
from kami.stock.vault import key_open
from kami.webhooks.egress import TargetRefused, checked_client
from kami.webhooks.models import Endpoint, WebhookAttempt, WebhookMessage
from kami.webhooks.signing import secret_open, signature_header

TIMEOUT_SECONDS = 10
EXCERPT_MAX = 500
S = OutboxMessage.Status
UNDERWAY = (S.PENDING, S.SENDING, S.FAILED)
KEY_EVENTS = ("order.fulfilled",)  # the events whose body may carry key text (Endpoint.include_keys)


class MerchantWebhookChannel:
    name = "merchant_webhook"

    def send(self, message: OutboxMessage) -> None:
        record = WebhookMessage.objects.select_related("endpoint").filter(outbox_id=message.pk).first()
        if record is None:
            raise PermanentFailure(f"outbox #{message.pk} has no webhook message (its endpoint was deleted)")
        endpoint = record.endpoint
        if not endpoint.enabled:
            raise PermanentFailure(f"endpoint #{endpoint.pk} is disabled: enable it, then redeliver this event")
        _earlier_first(record, lease_token=message.lease_token)
        body = webhook_body(message, include_keys=endpoint.include_keys)
        timestamp = int(clock.now().timestamp())
        headers = {"content-type": "application/json", "user-agent": "Kami-Webhooks/1", "webhook-id": record.msg_id,
                   "webhook-timestamp": str(timestamp),
                   "webhook-signature": signature_header(secrets_=signing_secrets(endpoint), msg_id=record.msg_id,
                                                         timestamp=timestamp, body=body)}
        _post(record, endpoint, body, headers)


def _post(record: WebhookMessage, endpoint: Endpoint, body: bytes, headers: dict) -> None:
    host, started = webhook_host(endpoint.url), time.monotonic()
    try:
        with url_path_hidden(endpoint.url), checked_client(timeout=TIMEOUT_SECONDS) as client:
            response = client.post(endpoint.url, content=body, headers=headers)
    except TargetRefused as exc:  # not a public address now (kami.webhooks.egress): retrying will not change that
        error = str(exc)  # names the host and address, never the URL's path
        _attempt(record, started, ok=False, error=error)
        raise PermanentFailure(f"webhook endpoint #{endpoint.pk}: {error}") from None
    except httpx.HTTPError as exc:
        error = f"{type(exc).__name__} talking to {host}"
        _attempt(record, started, ok=False, error=error)
        raise TemporaryFailure(f"webhook endpoint #{endpoint.pk}: {error}") from None
    ok = response.status_code // 100 == 2
    error = "" if ok else f"{host} answered HTTP {response.status_code}"
    _attempt(record, started, ok=ok, status=response.status_code, excerpt=response.text, error=error)
    if not ok:
        raise TemporaryFailure(f"webhook endpoint #{endpoint.pk}: {error}")


def _attempt(record: WebhookMessage, started: float, *, ok: bool, status: int | None = None, excerpt: str = "",
             error: str = "") -> None:
    """The attempt log row: its own autocommitted insert (no transaction is open in a channel)."""
    WebhookAttempt.objects.create(message=record, at=clock.now(), ok=ok, http_status=status,
                                  duration_ms=int((time.monotonic() - started) * 1000),
                                  response_excerpt=" ".join(excerpt.split())[:EXCERPT_MAX], error=error[:300])


def _earlier_first(record: WebhookMessage, *, lease_token: str) -> None:
    """Raise Deferred while an earlier event of the same order to the same endpoint is underway:
    until just after its next try, or after its lease when another worker is sending it now (one
    in this worker's own batch is tried right after: a second)."""
    if record.order_id is None:
        return
    earlier = (WebhookMessage.objects.filter(endpoint_id=record.endpoint_id, order_id=record.order_id,
                                             id__lt=record.id, outbox__status__in=UNDERWAY)
               .select_related("outbox").order_by("id").first())
    if earlier is None:
        return
    now = clock.now()
    blocker = earlier.outbox
    theirs = blocker.status == S.SENDING and blocker.lease_token != lease_token and blocker.lease_until
    after = blocker.lease_until if theirs else blocker.next_attempt_at
    until = max(now, after or now) + timedelta(seconds=1)
    raise Deferred(f"waiting for {earlier.event} {earlier.msg_id} of the same order", until=until)


def signing_secrets(endpoint: Endpoint, now: datetime | None = None) -> list[str]:
    """The current secret, and the previous one while its rotation overlap lasts."""
    now = now or clock.now()
    found = [secret_open(endpoint.secret_key_id, endpoint.secret_ciphertext)]
    if endpoint.previous_ciphertext and endpoint.previous_until and endpoint.previous_until > now:
        found.append(secret_open(endpoint.previous_key_id, endpoint.previous_ciphertext))
    return found


def webhook_body(message: OutboxMessage, *, include_keys: bool) -> bytes:
    """The exact bytes signed and sent. Key text is added here, when sending, and only for an
    endpoint that opted in: it is never stored in the outbox."""
    payload = message.payload or {}
    data = dict(payload.get("data") or {})
    if include_keys and payload.get("event") in KEY_EVENTS and payload.get("order_id"):
        links = OrderKey.objects.filter(order_id=payload["order_id"]).select_related("key").order_by("position")
        data["keys"] = [key_open(link.key).reveal() for link in links]
    body = {"type": payload.get("event", ""), "timestamp": payload.get("timestamp", ""), "data": data}
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
