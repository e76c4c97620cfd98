"""/merchant/webhooks (scope `webhooks`): the merchant's webhook endpoints — list, create (the
secret is in that answer only), read, change, delete, rotate the secret — their recent events with
each attempt, and redelivery. Through the same services as the back office (kami.webhooks).

A repeated POST with the same Idempotency-Key replays the first answer without the secret: the
secret is never stored in clear, not even in the idempotency record."""
from __future__ import annotations

import json
from datetime import datetime
from typing import Literal

from django.http import HttpResponse
from ninja import Header, Path, Router, Schema
from pydantic import Field

from kami.api.merchant.auth import ScopedToken
from kami.api.merchant.idempotency import HEADER_RULES, idempotent
from kami.api.merchant.schemas import READ_ERRORS, TEXT, WRITE_ERRORS, errors
from kami.core.net import client_ip
from kami.webhooks.models import EVENTS, Endpoint
from kami.webhooks.selectors import endpoint_get, endpoints_list, message_get, messages_list
from kami.webhooks.services import (
    OVERLAP_MAX_HOURS,
    ROTATION_OVERLAP_HOURS,
    endpoint_create,
    endpoint_delete,
    endpoint_disable,
    endpoint_enable,
    endpoint_redeliver_failed,
    endpoint_secret_rotate,
    endpoint_update,
    webhook_redeliver,
)

router = Router(tags=["webhooks"])
WEBHOOKS = ScopedToken("webhooks")
Event = Literal[EVENTS]
# What the service takes (kami.webhooks.services._url), said in the schema: http(s), a host name or
# IPv4 address, an optional port 1–65535, then printable ASCII (percent-encode the rest).
PORT = r"(?:[1-9][0-9]{0,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5])"
URL_PATTERN = rf"^https?://[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?(?::{PORT})?(?:[/?#][!-~]*)?$"
ID_MAX = 2**62  # ids as the database stores them (a bigger number is refused with a 422, not a 500)


def id_path(what: str):
    return Path(..., ge=1, le=ID_MAX, description=f"a {what}'s id")


URL_RULE = ("your receiver's http(s) URL; its host must be, or resolve to, public addresses only (no loopback, "
            "private, link-local or reserved ones: a 422 names the address), unless the operator set "
            "KAMI_WEBHOOK_ALLOW_PRIVATE=1")


class EndpointIn(Schema):
    url: str = Field(min_length=1, max_length=500, pattern=URL_PATTERN, examples=["https://erp.example.com/kami"],
                     description=URL_RULE)
    events: list[Event] = Field(min_length=1, max_length=len(EVENTS))
    description: str = Field("", max_length=200, pattern=TEXT)
    include_keys: bool = Field(False, description="order.fulfilled bodies carry the keys' text (off: never)")
    enabled: bool = True


class EndpointPatch(Schema):
    url: str | None = Field(None, min_length=1, max_length=500, pattern=URL_PATTERN, description=URL_RULE)
    events: list[Event] | None = Field(None, min_length=1, max_length=len(EVENTS))
    description: str | None = Field(None, max_length=200, pattern=TEXT)
    include_keys: bool | None = None
    enabled: bool | None = None


class EndpointOut(Schema):
    id: int
    url: str
    events: list[str]
    description: str
    include_keys: bool
    enabled: bool
    disabled_reason: str
    previous_secret_until: datetime | None = Field(description="the previous secret also signs until then")
    created_at: datetime


class EndpointSecretOut(EndpointOut):
    secret: str | None = Field(description="whsec_…: shown in this answer only (null in a replayed answer)")


class RotateIn(Schema):
    overlap_hours: int = Field(ROTATION_OVERLAP_HOURS, ge=0, le=OVERLAP_MAX_HOURS)


class AttemptOut(Schema):
    at: datetime
    ok: bool
    http_status: int | None
    duration_ms: int
    response_excerpt: str
    error: str


class MessageOut(Schema):
    id: int
    webhook_id: str
    event: str
    status: str = Field(description="pending | sending | sent | failed (retrying) | manual (gave up) | handled")
    attempts: list[AttemptOut]
    next_attempt_at: datetime | None
    created_at: datetime


class CountOut(Schema):
    redelivered: int


def endpoint_out(endpoint: Endpoint) -> dict:
    return {"id": endpoint.pk, "url": endpoint.url, "events": list(endpoint.events), "description": endpoint.description,
            "include_keys": endpoint.include_keys, "enabled": endpoint.enabled,
            "disabled_reason": endpoint.disabled_reason, "previous_secret_until": endpoint.previous_until,
            "created_at": endpoint.created_at}


def message_out(message) -> dict:
    row = message.outbox
    return {"id": message.pk, "webhook_id": message.msg_id, "event": message.event, "status": row.status,
            "attempts": [{"at": a.at, "ok": a.ok, "http_status": a.http_status, "duration_ms": a.duration_ms,
                          "response_excerpt": a.response_excerpt, "error": a.error}
                         for a in sorted(message.attempts.all(), key=lambda a: (a.at, a.pk))],
            "next_attempt_at": row.next_attempt_at if row.status in ("pending", "failed") else None,
            "created_at": message.created_at}


def _plain(schema: type[Schema], data: dict) -> dict:
    """`data` as JSON types (an idempotent answer is stored as JSON)."""
    return json.loads(schema(**data).model_dump_json())


def _with_secret(response, secret: list[str]):
    """The first answer gets the secret; the stored (and replayed) one has null."""
    if secret and response.status_code == 200:
        body = json.loads(response.content)
        body["secret"] = secret[0]
        response.content = json.dumps(body).encode()
    return response


@router.get("", auth=WEBHOOKS, response={200: list[EndpointOut], **READ_ERRORS}, summary="List webhook endpoints")
def endpoints(request):
    return [endpoint_out(e) for e in endpoints_list()]


@router.post("", auth=WEBHOOKS, response={200: EndpointSecretOut, **WRITE_ERRORS},
             summary="Add a webhook endpoint; its signing secret is in this answer only")
def endpoint_add(request, payload: EndpointIn, *,
                 idempotency_key: str = Header(..., alias="Idempotency-Key", **HEADER_RULES)):
    secret: list[str] = []

    def run():
        made = endpoint_create(url=payload.url, events=list(payload.events), description=payload.description,
                               include_keys=payload.include_keys, enabled=payload.enabled, actor=request.auth.actor,
                               ip=client_ip(request) or "")
        secret.append(made.secret)
        return 200, _plain(EndpointSecretOut, {**endpoint_out(made.endpoint), "secret": None})

    return _with_secret(idempotent(request, key=idempotency_key, run=run), secret)


@router.get("/{endpoint_id}", auth=WEBHOOKS, response={200: EndpointOut, **READ_ERRORS, **errors(404)},
            summary="Read a webhook endpoint")
def endpoint(request, endpoint_id: int = id_path("webhook endpoint")):
    return endpoint_out(endpoint_get(endpoint_id=endpoint_id))


@router.patch("/{endpoint_id}", auth=WEBHOOKS, response={200: EndpointOut, **WRITE_ERRORS},
              summary="Change a webhook endpoint (what is given), enable or disable it")
def endpoint_change(request, payload: EndpointPatch, endpoint_id: int = id_path("webhook endpoint")):
    actor, ip = request.auth.actor, client_ip(request) or ""
    found = endpoint_update(endpoint_id=endpoint_id, actor=actor, ip=ip, url=payload.url,
                            events=None if payload.events is None else list(payload.events),
                            description=payload.description, include_keys=payload.include_keys)
    if payload.enabled is True and not found.enabled:
        found = endpoint_enable(endpoint_id=endpoint_id, actor=actor, ip=ip)
    elif payload.enabled is False and found.enabled:
        found = endpoint_disable(endpoint_id=endpoint_id, reason=f"disabled through the API by {actor}", actor=actor,
                                 ip=ip)
    return endpoint_out(found)


@router.delete("/{endpoint_id}", auth=WEBHOOKS, response={204: None, **WRITE_ERRORS},
               summary="Delete a webhook endpoint; its unsent events are closed")
def endpoint_remove(request, endpoint_id: int = id_path("webhook endpoint")):
    endpoint_delete(endpoint_id=endpoint_id, actor=request.auth.actor, ip=client_ip(request) or "")
    return HttpResponse(status=204)


@router.post("/{endpoint_id}/rotate", auth=WEBHOOKS, response={200: EndpointSecretOut, **WRITE_ERRORS},
             summary="A new signing secret (in this answer only); the old one signs too for overlap_hours")
def endpoint_rotate(request, payload: RotateIn, endpoint_id: int = id_path("webhook endpoint"), *,
                    idempotency_key: str = Header(..., alias="Idempotency-Key", **HEADER_RULES)):
    secret: list[str] = []

    def run():
        made = endpoint_secret_rotate(endpoint_id=endpoint_id, overlap_hours=payload.overlap_hours,
                                      actor=request.auth.actor, ip=client_ip(request) or "")
        secret.append(made.secret)
        return 200, _plain(EndpointSecretOut, {**endpoint_out(made.endpoint), "secret": None})

    return _with_secret(idempotent(request, key=idempotency_key, run=run), secret)


@router.get("/{endpoint_id}/messages", auth=WEBHOOKS, response={200: list[MessageOut], **READ_ERRORS, **errors(404)},
            summary="The endpoint's latest 100 events, newest first, each with its attempts")
def messages(request, endpoint_id: int = id_path("webhook endpoint")):
    endpoint_get(endpoint_id=endpoint_id)
    return [message_out(m) for m in messages_list(endpoint_id=endpoint_id)]


@router.post("/{endpoint_id}/messages/{message_id}/redeliver", auth=WEBHOOKS,
             response={200: MessageOut, **WRITE_ERRORS}, summary="Send a failed event again now (same webhook-id)")
def message_redeliver(request, endpoint_id: int = id_path("webhook endpoint"),
                      message_id: int = id_path("webhook message"), *,
                      idempotency_key: str = Header(..., alias="Idempotency-Key", **HEADER_RULES)):
    def run():
        found = message_get(message_id=message_id)
        if found.endpoint_id != endpoint_id:
            found = message_get(message_id=0)  # raises NotFound: not this endpoint's
        webhook_redeliver(message_id=message_id, actor=request.auth.actor, ip=client_ip(request) or "")
        return 200, _plain(MessageOut, message_out(message_get(message_id=message_id)))

    return idempotent(request, key=idempotency_key, run=run)


@router.post("/{endpoint_id}/redeliver-failed", auth=WEBHOOKS, response={200: CountOut, **WRITE_ERRORS},
             summary="Send every failed or given-up event of the endpoint again now, oldest first")
def endpoint_redeliver(request, endpoint_id: int = id_path("webhook endpoint"), *,
                       idempotency_key: str = Header(..., alias="Idempotency-Key", **HEADER_RULES)):
    def run():
        count = endpoint_redeliver_failed(endpoint_id=endpoint_id, actor=request.auth.actor,
                                          ip=client_ip(request) or "")
        return 200, {"redelivered": count}

    return idempotent(request, key=idempotency_key, run=run)
