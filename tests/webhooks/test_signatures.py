"""Our signatures, checked by the `standardwebhooks` package in a real receiver: genuine events
verify, an old (replayed) one is refused, both secrets verify during a rotation, and no body carries
key text unless the endpoint opted in."""
from __future__ import annotations

import logging
from datetime import timedelta

import httpx
import pytest
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from kami.core import clock
from kami.delivery.worker import run_once
from kami.webhooks.channel import signing_secrets
from kami.webhooks.models import Endpoint, WebhookAttempt, WebhookMessage
from kami.webhooks.services import endpoint_secret_rotate
from tests.webhooks.play import drain, webhook_rows
from tests.webhooks.receiver import Receiver

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_paid_order_reaches_the_receiver_signed_and_verified(receiver, hook, pay, caplog):
    # given: an endpoint whose URL carries a token in its query
    caplog.set_level(logging.INFO)
    made = hook(url=f"{receiver.url}?token=path-token-s3cret")
    assert made.secret.startswith("whsec_") and made.secret not in repr(Endpoint.objects.get())
    # when
    order = pay(keys=["AAAA-1111"])
    drain()
    # then: standardwebhooks verified both events, in order
    assert receiver.rejected == []
    assert receiver.types() == ["order.paid", "order.fulfilled"]
    fulfilled = receiver.received[1]
    assert fulfilled["data"]["order"]["order_no"] == order.order_no
    assert fulfilled["data"]["order"]["status"] == "fulfilled"
    headers = receiver.headers[1]
    message = WebhookMessage.objects.get(event="order.fulfilled")
    assert headers["webhook-id"] == message.msg_id
    assert headers["webhook-signature"].startswith("v1,") and " " not in headers["webhook-signature"]
    # and each try is logged: status, time, an excerpt of the answer
    [attempt] = WebhookAttempt.objects.filter(message=message)
    assert (attempt.ok, attempt.http_status, attempt.response_excerpt) == (True, 200, "ok, thanks")
    # and the log names the endpoint's host only, never its query
    assert "127.0.0.1" in caplog.text and "path-token-s3cret" not in caplog.text


def test_a_replay_outside_the_window_is_refused_then_a_fresh_try_passes(receiver, hook, pay):
    # given: the event is signed ten minutes ago (as a captured request replayed now would be)
    hook(events=["order.fulfilled"])
    clock.travel(timedelta(minutes=-10))
    pay()
    # when
    run_once("test-worker")
    # then: standardwebhooks refuses the old timestamp; the try is logged and will be retried
    assert receiver.received == [] and receiver.rejected == ["Message timestamp too old"]
    [row] = webhook_rows()
    assert row.status == "failed" and "HTTP 400" in row.last_error
    [attempt] = WebhookAttempt.objects.all()
    assert attempt.http_status == 400 and "too old" in attempt.response_excerpt
    # and the captured request, replayed verbatim, is refused again
    old_headers, old_body = receiver.raw[0]
    assert httpx.post(receiver.url, content=old_body, headers=old_headers).status_code == 400
    # when: the retry goes out now, with the same webhook-id and a fresh timestamp
    clock.travel(None)
    run_once("test-worker")
    # then
    assert receiver.types() == ["order.fulfilled"]
    assert receiver.headers[0]["webhook-id"] == old_headers["webhook-id"]
    with pytest.raises(WebhookVerificationError):
        Webhook(receiver.secrets[0]).verify(old_body, old_headers)


def test_during_a_rotation_both_secrets_verify_and_after_it_only_the_new_one(hook, pay):
    # given: two receivers at one endpoint's URL in turn: one knows the old secret, one the new
    old_side = Receiver().start()
    try:
        made = hook(url=old_side.url, events=["order.fulfilled"])
        old_side.secrets = [made.secret]
        # when: rotated with the default overlap
        rotated = endpoint_secret_rotate(endpoint_id=made.endpoint.pk, actor="test")
        pay()
        drain()
        # then: the old secret still verifies, and the request carries a signature per secret
        assert old_side.rejected == [] and old_side.types() == ["order.fulfilled"]
        headers, body = old_side.raw[0]
        assert len(headers["webhook-signature"].split(" ")) == 2
        Webhook(rotated.secret).verify(body, headers)  # the new secret verifies the same request
        # and once the overlap is over only the new secret signs
        endpoint = Endpoint.objects.get()
        assert len(signing_secrets(endpoint)) == 2
        assert len(signing_secrets(endpoint, now=clock.now() + timedelta(hours=25))) == 1
        # when: rotated again with no overlap, the receiver that knows only a retired secret refuses
        endpoint_secret_rotate(endpoint_id=endpoint.pk, actor="test", overlap_hours=0)
        pay()
        run_once("test-worker")
        assert old_side.rejected == ["No matching signature found"]
    finally:
        old_side.stop()


def test_key_text_only_reaches_an_endpoint_that_opted_in(hook, pay):
    # given: two endpoints, one with include_keys
    plain, keyed = Receiver().start(), Receiver().start()
    try:
        plain.secrets = [hook(url=plain.url, events=["order.fulfilled"]).secret]
        keyed.secrets = [hook(url=keyed.url, events=["order.fulfilled"], include_keys=True).secret]
        # when
        pay(keys=["SECRET-KEY-0001", "SECRET-KEY-0002"])
        drain()
        # then
        assert all(b"SECRET-KEY" not in body for _, body in plain.raw)
        assert "keys" not in plain.received[0]["data"]
        assert keyed.received[0]["data"]["keys"] == ["SECRET-KEY-0001", "SECRET-KEY-0002"]
        # and the outbox never held the text: it is read when sending
        assert all("SECRET-KEY" not in str(row.payload) for row in webhook_rows())
    finally:
        plain.stop()
        keyed.stop()
