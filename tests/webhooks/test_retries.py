"""Retries over days, an endpoint that is down and comes back, auto-disable with one alert to the
merchant after persistent failure, and redelivery by hand."""
from __future__ import annotations

from datetime import timedelta

import pytest

from kami import settings as shipped
from kami.core import clock
from kami.delivery import backoff
from kami.delivery.models import DeliveryAttempt, OutboxMessage
from kami.delivery.worker import run_once
from kami.webhooks.models import Endpoint, WebhookAttempt
from kami.webhooks.services import endpoint_enable, endpoint_redeliver_failed, webhook_redeliver
from tests.webhooks.play import drain, webhook_rows
from tests.webhooks.receiver import Receiver

pytestmark = pytest.mark.django_db(transaction=True)
DAY = 86400


@pytest.mark.sqlite_only
def test_the_default_schedule_retries_for_at_least_three_days(settings):
    # given the shipped schedule; each wait is drawn between half and all of its step
    settings.KAMI_DELIVERY_BACKOFF_BY_CHANNEL = shipped.KAMI_DELIVERY_BACKOFF_BY_CHANNEL
    plan = backoff.schedule("merchant_webhook")
    # then: even the shortest draw keeps trying for three days, and the other channels keep theirs
    assert sum(plan) / 2 >= 3 * DAY
    assert backoff.max_attempts(plan) == len(plan) + 1
    assert backoff.schedule("email") == [int(s) for s in settings.KAMI_DELIVERY_BACKOFF]


def test_an_endpoint_down_then_back_gets_every_event_in_order(hook, pay):
    # given: nothing listens at the endpoint's port yet
    down = Receiver()
    down.secrets = [hook(url=down.url, events=["order.paid", "order.fulfilled"]).secret]
    try:
        pay()
        # when
        run_once("test-worker")
        # then: the first event failed (logged, retry planned); the second waits behind it, no try spent
        paid, fulfilled = webhook_rows()
        assert paid.status == "failed" and "ConnectError" in paid.last_error and paid.attempts == 1
        assert fulfilled.status == "pending" and fulfilled.attempts == 0
        assert fulfilled.next_attempt_at > paid.next_attempt_at
        [attempt] = WebhookAttempt.objects.all()
        assert attempt.ok is False and attempt.http_status is None and "ConnectError" in attempt.error
        # when: the receiver comes back, and the worker keeps going
        down.start()
        drain()
        # then
        assert down.types() == ["order.paid", "order.fulfilled"]
        assert [r.status for r in webhook_rows()] == ["sent", "sent"]
    finally:
        down.stop()


def test_persistent_failure_disables_the_endpoint_and_alerts_once(receiver, hook, pay, settings):
    # given: a short schedule (two retries), and a receiver answering 500
    settings.KAMI_DELIVERY_BACKOFF_BY_CHANNEL = {"merchant_webhook": [0, 0]}
    made = hook(events=["order.paid", "order.fulfilled"])
    receiver.fail_with = 500
    pay()
    # when
    for step in range(5):
        clock.travel(timedelta(seconds=2 * step))  # the deferred event waits a second behind the first
        run_once("test-worker")
    # then: the first event gave up after three tries, the endpoint is off, one alert went out
    paid, fulfilled = webhook_rows()
    assert (paid.status, paid.attempts) == ("manual", 3)
    endpoint = Endpoint.objects.get()
    assert endpoint.enabled is False and "failed 3 times" in endpoint.disabled_reason
    alerts = OutboxMessage.objects.filter(kind="admin_alert")
    assert [a.payload["event"] for a in alerts] == ["webhook_disabled"]
    assert str(made.endpoint.pk) in alerts[0].payload["subject"]
    # and the event behind it was not tried against a disabled endpoint
    assert fulfilled.status == "manual" and "disabled" in fulfilled.last_error
    assert [a.http_status for a in WebhookAttempt.objects.order_by("id")] == [500, 500, 500]
    assert all("receiver is having a bad day" == a.response_excerpt for a in WebhookAttempt.objects.all())
    # and a new order sends nothing to it
    pay()
    assert webhook_rows().count() == 2
    # when: fixed, enabled again, its failed events redelivered by hand
    receiver.fail_with = None
    endpoint_enable(endpoint_id=endpoint.pk, actor="test")
    assert endpoint_redeliver_failed(endpoint_id=endpoint.pk, actor="test") == 2
    drain()
    # then: delivered in order, with their original ids, no second alert
    assert receiver.types() == ["order.paid", "order.fulfilled"]
    assert OutboxMessage.objects.filter(kind="admin_alert").count() == 1


def test_one_event_redelivered_by_hand(receiver, hook, pay, settings):
    # given: an event that gave up
    settings.KAMI_DELIVERY_BACKOFF_BY_CHANNEL = {"merchant_webhook": []}
    hook(events=["order.fulfilled"])
    receiver.fail_with = 503
    pay()
    run_once("test-worker")
    [row] = webhook_rows()
    assert row.status == "manual"
    endpoint = Endpoint.objects.get()
    endpoint_enable(endpoint_id=endpoint.pk, actor="test")
    # when
    receiver.fail_with = None
    webhook_redeliver(message_id=row.webhook.pk, actor="staff")
    run_once("test-worker")
    # then
    assert receiver.types() == ["order.fulfilled"]
    assert DeliveryAttempt.objects.filter(message=row).count() == 2
