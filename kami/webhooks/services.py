"""Managing webhook endpoints: create (the secret is returned once), update, enable, disable,
rotate the secret, delete, and redeliver failed events. Every write is audited in its transaction.
Used by the back office and the merchant API alike."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from urllib.parse import urlsplit

from django.db import transaction

from kami.audit.services import audit_record
from kami.core import clock
from kami.core.errors import BadInput, NotFound
from kami.core.httpurl import http_url_checked
from kami.delivery.models import OutboxMessage
from kami.delivery.services import delivery_retry_now
from kami.delivery.wake import outbox_written
from kami.webhooks.egress import url_target_checked
from kami.webhooks.models import EVENTS, Endpoint, WebhookMessage
from kami.webhooks.signing import secret_new, secret_open, secret_seal

S = OutboxMessage.Status
ROTATION_OVERLAP_HOURS = 24  # how long the previous secret keeps signing after a rotation
OVERLAP_MAX_HOURS = 24 * 7


@dataclass(frozen=True)
class NewSecret:
    endpoint: Endpoint
    secret: str  # shown once; only its sealed form is kept


def endpoint_create(*, url: str, events: list[str], description: str = "", include_keys: bool = False,
                    enabled: bool = True, actor: str, ip: str = "") -> NewSecret:
    url, events, description = _url(url), _events(events), _description(description)
    secret, now = secret_new(), clock.now()
    key_id, blob = secret_seal(secret)
    with transaction.atomic():  # the endpoint and its audit row together
        endpoint = Endpoint.objects.create(url=url, events=events, description=description, include_keys=include_keys,
                                           enabled=enabled, secret_key_id=key_id, secret_ciphertext=blob,
                                           created_at=now, updated_at=now)
        audit_record(actor=actor, action="webhook.create", obj_type="webhook_endpoint", obj_id=endpoint.pk, ip=ip,
                     host=urlsplit(url).hostname, events=events, include_keys=include_keys)
    return NewSecret(endpoint=endpoint, secret=secret)


def endpoint_update(*, endpoint_id: int, actor: str, ip: str = "", url: str | None = None,
                    events: list[str] | None = None, description: str | None = None,
                    include_keys: bool | None = None) -> Endpoint:
    """Change what is given (None: unchanged). Messages already queued keep their event and go to
    the new URL."""
    changes = {}
    if url is not None:
        changes["url"] = _url(url)
    if events is not None:
        changes["events"] = _events(events)
    if description is not None:
        changes["description"] = _description(description)
    if include_keys is not None:
        changes["include_keys"] = bool(include_keys)
    with transaction.atomic():  # the change and its audit row, under the endpoint's row lock
        endpoint = _locked(endpoint_id)
        for name, value in changes.items():
            setattr(endpoint, name, value)
        endpoint.updated_at = clock.now()
        endpoint.save()
        audit_record(actor=actor, action="webhook.update", obj_type="webhook_endpoint", obj_id=endpoint.pk, ip=ip,
                     fields=sorted(changes), include_keys=endpoint.include_keys)
    return endpoint


def endpoint_enable(*, endpoint_id: int, actor: str, ip: str = "") -> Endpoint:
    with transaction.atomic():  # the change and its audit row together
        endpoint = _locked(endpoint_id)
        endpoint.enabled, endpoint.disabled_reason, endpoint.disabled_at = True, "", None
        endpoint.updated_at = clock.now()
        endpoint.save(update_fields=["enabled", "disabled_reason", "disabled_at", "updated_at"])
        audit_record(actor=actor, action="webhook.enable", obj_type="webhook_endpoint", obj_id=endpoint.pk, ip=ip)
    return endpoint


def endpoint_disable(*, endpoint_id: int, reason: str, actor: str, ip: str = "") -> Endpoint:
    """No new events are queued for a disabled endpoint; those already queued fail without a try
    (they can be redelivered once it is enabled again)."""
    with transaction.atomic():  # the change and its audit row together
        endpoint = endpoint_disable_locked(endpoint=_locked(endpoint_id), reason=reason or "disabled by staff")
        audit_record(actor=actor, action="webhook.disable", obj_type="webhook_endpoint", obj_id=endpoint.pk, ip=ip,
                     reason=endpoint.disabled_reason)
    return endpoint


def endpoint_disable_locked(*, endpoint: Endpoint, reason: str) -> Endpoint:
    """Disable an endpoint locked by the caller (staff, or kami.webhooks.failures after it kept failing)."""
    endpoint.enabled, endpoint.disabled_reason = False, " ".join(reason.split())[:300]
    endpoint.disabled_at = endpoint.updated_at = clock.now()
    endpoint.save(update_fields=["enabled", "disabled_reason", "disabled_at", "updated_at"])
    return endpoint


def endpoint_secret_rotate(*, endpoint_id: int, actor: str, ip: str = "",
                           overlap_hours: int = ROTATION_OVERLAP_HOURS) -> NewSecret:
    """A new secret, returned once. The current one becomes the previous one and keeps signing
    alongside for `overlap_hours` (0: it stops now), so receivers can switch without losing events."""
    if not 0 <= overlap_hours <= OVERLAP_MAX_HOURS:
        raise BadInput(f"overlap_hours: {overlap_hours}; give 0 to {OVERLAP_MAX_HOURS} hours")
    secret = secret_new()
    key_id, blob = secret_seal(secret)
    with transaction.atomic():  # the swap and its audit row, under the endpoint's row lock
        endpoint = _locked(endpoint_id)
        now = clock.now()
        endpoint.previous_key_id, endpoint.previous_ciphertext = endpoint.secret_key_id, endpoint.secret_ciphertext
        endpoint.previous_until = now + timedelta(hours=overlap_hours)
        endpoint.secret_key_id, endpoint.secret_ciphertext, endpoint.updated_at = key_id, blob, now
        endpoint.save()
        audit_record(actor=actor, action="webhook.rotate", obj_type="webhook_endpoint", obj_id=endpoint.pk, ip=ip,
                     overlap_hours=overlap_hours)
    return NewSecret(endpoint=endpoint, secret=secret)


def endpoint_delete(*, endpoint_id: int, actor: str, ip: str = "") -> None:
    """Delete the endpoint and its messages. Its unsent events are closed as `handled` first (their
    outbox rows would otherwise wait for an endpoint that no longer exists)."""
    # Locks in the worker's order, outbox rows before the endpoint: a worker giving up on one of its
    # events updates that row, then disables the endpoint (kami.webhooks.failures).
    with transaction.atomic():  # close its queue, delete, audit: together
        outbox_ids = list(WebhookMessage.objects.filter(endpoint_id=endpoint_id).values_list("outbox_id", flat=True))
        OutboxMessage.objects.filter(id__in=outbox_ids, status__in=(S.PENDING, S.FAILED, S.MANUAL)).update(
            status=S.HANDLED, note="webhook endpoint deleted", handled_by=(actor or "unknown")[:150],
            handled_at=clock.now(), lease_until=None, lease_token="")
        _locked(endpoint_id).delete()
        audit_record(actor=actor, action="webhook.delete", obj_type="webhook_endpoint", obj_id=endpoint_id, ip=ip)


def webhook_redeliver(*, message_id: int, actor: str, ip: str = "") -> WebhookMessage:
    """Try one failed (or not yet sent) event again now, with the same webhook-id. The endpoint must
    be enabled: a disabled one would refuse it at once."""
    message = WebhookMessage.objects.select_related("endpoint", "outbox").filter(pk=message_id).first()
    if message is None:
        raise NotFound(f"no webhook message #{message_id}")
    if not message.endpoint.enabled:
        raise BadInput(f"endpoint #{message.endpoint_id} is disabled: enable it first, then redeliver")
    if message.outbox.status == S.SENT:
        raise BadInput(f"event #{message_id} ({message.msg_id}) was delivered: the endpoint answered 2xx; "
                       "there is nothing to redeliver")
    delivery_retry_now(message_id=message.outbox_id, actor=actor, ip=ip)
    return message


def endpoint_redeliver_failed(*, endpoint_id: int, actor: str, ip: str = "") -> int:
    """Every event of the endpoint that gave up (`manual`) or is waiting for a retry (`failed`)
    becomes due now, oldest first (the worker takes equal due times by id, and holds an order's
    later events back until its earlier ones are through). Returns how many."""
    endpoint = Endpoint.objects.filter(pk=endpoint_id).first()
    if endpoint is None:
        raise NotFound(f"no webhook endpoint #{endpoint_id}")
    if not endpoint.enabled:
        raise BadInput(f"endpoint #{endpoint_id} is disabled: enable it first, then redeliver")
    with transaction.atomic():  # the requeue and its audit row together (no endpoint lock: see endpoint_delete)
        outbox_ids = WebhookMessage.objects.filter(endpoint=endpoint).values_list("outbox_id", flat=True)
        count = OutboxMessage.objects.filter(id__in=list(outbox_ids), status__in=(S.FAILED, S.MANUAL)).update(
            status=S.PENDING, next_attempt_at=clock.now(), lease_until=None, lease_token="")
        audit_record(actor=actor, action="webhook.redeliver_failed", obj_type="webhook_endpoint", obj_id=endpoint_id,
                     ip=ip, count=count)
    if count:
        outbox_written()  # after commit: wake the workers
    return count


def secrets_key_ids() -> list[str]:
    """The data key id of each stored endpoint secret (the current one and, during a rotation of
    the endpoint's secret, the previous one)."""
    ids = []
    for current, previous in Endpoint.objects.values_list("secret_key_id", "previous_key_id"):
        ids += [current] + ([previous] if previous else [])
    return ids


def secrets_reseal(target: str) -> int:
    """Seal every endpoint secret with the data key `target` (the data-key rotation); how many
    secrets moved. The endpoint's signing secrets stay the same: only their sealing changes."""
    moved = 0
    stale = Endpoint.objects.exclude(secret_key_id=target) | Endpoint.objects.exclude(previous_key_id__in=("", target))
    for pk in stale.values_list("pk", flat=True).distinct():
        with transaction.atomic():  # one endpoint: read locked, sealed again, written
            endpoint = Endpoint.objects.select_for_update().get(pk=pk)
            if endpoint.secret_key_id != target:
                secret = secret_open(endpoint.secret_key_id, endpoint.secret_ciphertext)
                endpoint.secret_key_id, endpoint.secret_ciphertext = secret_seal(secret)
                moved += 1
            if endpoint.previous_key_id not in ("", target):
                secret = secret_open(endpoint.previous_key_id, endpoint.previous_ciphertext)
                endpoint.previous_key_id, endpoint.previous_ciphertext = secret_seal(secret)
                moved += 1
            Endpoint.objects.filter(pk=pk).update(
                secret_key_id=endpoint.secret_key_id, secret_ciphertext=endpoint.secret_ciphertext,
                previous_key_id=endpoint.previous_key_id, previous_ciphertext=endpoint.previous_ciphertext)
    return moved


def _locked(endpoint_id: int) -> Endpoint:
    endpoint = Endpoint.objects.select_for_update().filter(pk=endpoint_id).first()
    if endpoint is None:
        raise NotFound(f"no webhook endpoint #{endpoint_id}")
    return endpoint


def _url(url: str) -> str:
    url = http_url_checked(url, field="url", example="https://erp.example.com/kami/webhooks")
    if not url:
        raise BadInput("url: give the address Kami posts events to, e.g. https://erp.example.com/kami/webhooks",
                       fields={"url": "invalid"})
    url_target_checked(url, field="url")  # public addresses only (kami.webhooks.egress); checked again when sending
    return url


def _events(events: list[str]) -> list[str]:
    wanted = {e.strip() for e in (events or []) if e and e.strip()}
    unknown = sorted(wanted - set(EVENTS))
    if unknown:
        raise BadInput(f"events: {', '.join(unknown)} unknown; choose from {', '.join(EVENTS)}",
                       fields={"events": "unknown"})
    if not wanted:
        raise BadInput(f"events: give at least one of {', '.join(EVENTS)}", fields={"events": "required"})
    return [e for e in EVENTS if e in wanted]


def _description(text: str) -> str:
    text = " ".join((text or "").split())
    if len(text) > 200:
        raise BadInput(f"description: {len(text)} characters; keep it under 200", fields={"description": "too long"})
    return text
