"""The `mint` delivery channel: one outbox row `mint_keys` is one signed call to a dynamic
product's mint URL for one paid order. Registered by kami.fulfilment.apps (delivery never imports
this layer).

    POST <mint url>
    content-type: application/json      idempotency-key: <order_no>
    webhook-id: mint_<order_no>   webhook-timestamp: 1733430000   webhook-signature: v1,…

    {"type": "keys.mint", "timestamp": "…", "data": {"order_no": "…", "product": "steam-50",
     "quantity": 2, "items": [{"n": 1, "idempotency_key": "<order_no>:1"}, {"n": 2, …}],
     "custom_values": {…}}}

The ids stay the same on every retry, so the merchant's system can answer a repeat with the keys
it minted the first time. A 2xx `{"keys": [...]}` is checked (answer.py) and stored (service.py);
no answer within KAMI_MINT_TIMEOUT_SECONDS, a non-2xx status, a redirect (never followed) or a
bad answer is retried with the channel's backoff (KAMI_MINT_BACKOFF); out of attempts, a person
is told (service.on_mint_exhausted). While staff have the waiting order flagged for review, the
call is deferred (no attempt spent) until they unflag it or refund it. Errors name the host only:
a URL's path may hold a token.
"""
from __future__ import annotations

import json
import logging
from datetime import timedelta

import httpx
from django.conf import settings

from kami.core import clock
from kami.delivery.channels import Deferred, PermanentFailure, TemporaryFailure
from kami.delivery.channels.webhook import url_path_hidden, webhook_host
from kami.delivery.models import OutboxMessage
from kami.fulfilment.mint.answer import ANSWER_MAX_BYTES, BadAnswer, answer_keys
from kami.fulfilment.mint.config import mint_secret_open
from kami.fulfilment.mint.service import KeyTaken, MintJob, mint_job, mint_store
from kami.webhooks.signing import signature_header

log = logging.getLogger("kami.fulfilment.mint")
SET_ASIDE_RECHECK_SECONDS = 120  # a flagged order's mint looks again this often (no attempt spent)


class MintChannel:
    name = "mint"

    def send(self, message: OutboxMessage) -> None:
        job = mint_job(order_id=(message.payload or {}).get("order_id"))
        if job is None:
            return  # fulfilled (an earlier answer, by hand) or refunded meanwhile: nothing to mint
        if job.set_aside:
            raise Deferred(f"order {job.order.order_no} is flagged for review: minted once it is unflagged",
                           until=clock.now() + timedelta(seconds=SET_ASIDE_RECHECK_SECONDS))
        if not job.product.mint_url or not job.product.mint_secret_key_id:
            slug = job.product.slug
            raise PermanentFailure(f"product {slug} has no mint URL: set one with "
                                   f"`kami product set {slug} mint_url=https://…`, then retry this delivery")
        body = mint_body(job)
        try:
            keys = answer_keys(_post(job, body, msg_id=f"mint_{job.order.order_no}"), quantity=job.order.quantity)
            stored = mint_store(order_id=job.order.pk, keys=keys)
        except (BadAnswer, KeyTaken) as exc:
            raise TemporaryFailure(f"mint URL {webhook_host(job.product.mint_url)}: {exc}") from None
        if not stored and mint_job(order_id=job.order.pk) is not None:
            # flagged by staff during the call (or flagged and unflagged): the keys were not stored; ask again later
            raise Deferred(f"order {job.order.order_no} was flagged while minting: asked again once it is unflagged",
                           until=clock.now() + timedelta(seconds=SET_ASIDE_RECHECK_SECONDS))
        if not stored:
            log.info("order %s: minted keys arrived after the order stopped waiting; none stored", job.order.order_no)


def mint_body(job: MintJob) -> bytes:
    """The exact bytes signed and sent: no key text, no buyer email."""
    order = job.order
    items = [{"n": n, "idempotency_key": f"{order.order_no}:{n}"} for n in range(1, order.quantity + 1)]
    data = {"order_no": order.order_no, "product": job.product.slug, "quantity": order.quantity, "items": items,
            "custom_values": order.custom_values or {}}
    body = {"type": "keys.mint", "timestamp": clock.now().isoformat(), "data": data}
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()


def _post(job: MintJob, body: bytes, *, msg_id: str) -> bytes:
    """The answer's body when the URL answered 2xx in time; TemporaryFailure otherwise."""
    url, host = job.product.mint_url, webhook_host(job.product.mint_url)
    timestamp = int(clock.now().timestamp())
    headers = {"content-type": "application/json", "user-agent": "Kami-Mint/1", "idempotency-key": job.order.order_no,
               "webhook-id": msg_id, "webhook-timestamp": str(timestamp),
               "webhook-signature": signature_header(secrets_=[mint_secret_open(job.product)], msg_id=msg_id,
                                                     timestamp=timestamp, body=body)}
    try:
        with url_path_hidden(url), httpx.stream("POST", url, content=body, headers=headers,
                                                timeout=settings.KAMI_MINT_TIMEOUT_SECONDS,
                                                follow_redirects=False) as response:
            if response.status_code // 100 != 2:
                raise TemporaryFailure(f"mint URL {host} answered HTTP {response.status_code}")
            return _read(response, host)
    except httpx.HTTPError as exc:
        raise TemporaryFailure(f"mint URL: {type(exc).__name__} talking to {host}") from None


def _read(response: httpx.Response, host: str) -> bytes:
    body = b""
    for chunk in response.iter_bytes():
        body += chunk
        if len(body) > ANSWER_MAX_BYTES:
            raise TemporaryFailure(f"mint URL {host}: answer larger than {ANSWER_MAX_BYTES} bytes")
    return body
