"""Admin alerts fan out to every configured channel — email (real SMTP), Telegram (a loopback Bot
API) and a signed webhook (a loopback receiver that checks the signature) — once per event and
channel, retried with the delivery backoff, and without a secret in any row or log line."""
from __future__ import annotations

import hmac
import json
import logging
from datetime import timedelta

import pytest

from kami.audit.models import AuditLog
from kami.core import clock
from kami.delivery.channels.webhook import webhook_signature
from kami.delivery.models import DeliveryAttempt, OutboxMessage
from kami.delivery.services import admin_alert
from kami.delivery.worker import run_once
from tests.delivery.alert_play import FakeTelegram, FakeWebhookReceiver, verify
from tests.ports import free_port

pytestmark = pytest.mark.django_db(transaction=True)

TOKEN = "7012345678:AAH-secret-bot-token-0123456789abcdef"
SECRET = "whsec_0123456789-very-secret"
LOW_STOCK = {"product": "steam-100", "product_name": "Steam Wallet 100", "left": 2, "threshold": 5}


@pytest.fixture
def telegram(settings):
    fake = FakeTelegram(token=TOKEN).start()
    settings.KAMI_TELEGRAM_BOT_TOKEN, settings.KAMI_TELEGRAM_CHAT_ID = TOKEN, "-100200300"
    settings.KAMI_TELEGRAM_API_BASE = fake.base_url
    yield fake
    fake.stop()


@pytest.fixture
def webhook(settings):
    fake = FakeWebhookReceiver(secret=SECRET).start()
    settings.KAMI_ALERT_WEBHOOK_URL = f"{fake.base_url}/hooks/kami?team=ops"
    settings.KAMI_ALERT_WEBHOOK_SECRET = SECRET
    yield fake
    fake.stop()


def alert_rows() -> dict[str, OutboxMessage]:
    return {m.channel: m for m in OutboxMessage.objects.filter(kind="admin_alert")}


def test_one_event_reaches_email_telegram_and_webhook(smtp, telegram, webhook, settings):
    # given
    settings.KAMI_ADMIN_LANGUAGE = "en"
    # when
    admin_alert(event="low_stock", dedupe_key="p1:1", params=LOW_STOCK)
    assert run_once("w1") == 3
    # then: every channel got it, once
    assert {c: m.status for c, m in alert_rows().items()} == {"email": "sent", "telegram": "sent", "webhook": "sent"}
    [mail] = smtp.to("owner@shop.test")
    assert str(mail["Subject"]) == "[Kami] Low stock: steam-100 has 2 keys left"
    [sent] = telegram.messages
    assert sent["chat_id"] == "-100200300"
    assert sent["text"].startswith("[Kami] Low stock: steam-100 has 2 keys left\n\nSteam Wallet 100 (steam-100)")
    [event] = webhook.events
    assert webhook.rejected == []
    assert event["event"] == "low_stock" and event["id"] == "alert:low_stock:p1:1"
    assert event["subject"] == "Low stock: steam-100 has 2 keys left" and "Import more keys." in event["body"]
    assert set(event) == {"event", "subject", "body", "at", "id"}
    # and what is stored names the receivers without their secrets
    rows = alert_rows()
    assert rows["telegram"].target == "-100200300"
    assert rows["webhook"].target == f"127.0.0.1:{webhook._server.server_address[1]}"


def test_the_same_event_twenty_times_is_one_row_per_channel(smtp, telegram, webhook):
    # when: a notification repeated, a sweep re-running, a worker retrying — the same event 20 times
    for _ in range(20):
        admin_alert(event="awaiting_stock", dedupe_key="O-20", params={"order_no": "O-20", "product": "steam-100"})
    # then
    assert sorted(OutboxMessage.objects.values_list("dedupe_key", flat=True)) == [
        "alert:awaiting_stock:O-20:email", "alert:awaiting_stock:O-20:telegram", "alert:awaiting_stock:O-20:webhook"]
    # when
    run_once("w1")
    for _ in range(20):
        admin_alert(event="awaiting_stock", dedupe_key="O-20", params={"order_no": "O-20", "product": "steam-100"})
    run_once("w1")
    # then: one message per channel, ever
    assert (len(smtp.to("owner@shop.test")), len(telegram.messages), len(webhook.events)) == (1, 1, 1)


def test_without_any_channel_the_alert_goes_to_the_log(settings):
    settings.KAMI_ADMIN_EMAIL = ""
    [row] = admin_alert(event="low_stock", dedupe_key="p1", params=LOW_STOCK)
    assert (row.channel, row.target) == ("log", "log")


def test_telegram_down_then_back_is_retried_with_backoff(telegram, settings):
    # given: only Telegram, and the Bot API answers 502
    settings.KAMI_ADMIN_EMAIL, settings.KAMI_DELIVERY_BACKOFF = "", [10, 10]
    telegram.fail_with = 502
    admin_alert(event="low_stock", dedupe_key="p1", params=LOW_STOCK)
    # when
    run_once("w1")
    # then
    [row] = OutboxMessage.objects.all()
    assert (row.status, row.attempts) == ("failed", 1)
    assert "HTTP 502" in row.last_error and TOKEN not in row.last_error and "/bot***/" in row.last_error
    # when: it is back and the retry is due
    telegram.fail_with = None
    clock.travel(timedelta(seconds=11))
    run_once("w1")
    # then
    row.refresh_from_db()
    assert (row.status, row.attempts) == ("sent", 2)
    assert len(telegram.messages) == 1


def test_webhook_failing_then_recovering_sends_the_same_id_signed_afresh(webhook, settings):
    # given: only the webhook, which answers 500 at first
    settings.KAMI_ADMIN_EMAIL, settings.KAMI_DELIVERY_BACKOFF = "", [10, 10]
    webhook.fail_with = 500
    admin_alert(event="flagged", dedupe_key="O-1:amount_mismatch", text="flagged.amount_mismatch",
                params={"order_no": "O-1", "paid": "1.00 CNY", "expected": "29.90 CNY"})
    # when
    run_once("w1")
    # then
    [row] = OutboxMessage.objects.all()
    assert (row.status, row.last_error) == ("failed", f"webhook {row.target} answered HTTP 500")
    # when
    webhook.fail_with = None
    clock.travel(timedelta(seconds=11))
    run_once("w1")
    # then
    row.refresh_from_db()
    assert row.status == "sent" and webhook.requests == 2 and webhook.rejected == []
    [event] = webhook.events
    assert event["id"] == "alert:flagged:O-1:amount_mismatch" and event["event"] == "flagged"


def test_a_receiver_with_another_secret_rejects_and_the_alert_ends_manual_logged(webhook, settings, caplog):
    # given: Kami signs with a secret the receiver does not know; one retry in the schedule
    settings.KAMI_ADMIN_EMAIL, settings.KAMI_DELIVERY_BACKOFF = "", [10]
    settings.KAMI_ALERT_WEBHOOK_SECRET = "not-the-receivers-secret"
    admin_alert(event="low_stock", dedupe_key="p1", params=LOW_STOCK)
    # when
    with caplog.at_level(logging.ERROR, logger="kami.delivery.worker"):
        run_once("w1")
        clock.travel(timedelta(seconds=11))
        run_once("w1")
    # then: manual, and only the log hears about it (no alert about an alert)
    assert webhook.rejected == ["signature mismatch", "signature mismatch"] and webhook.events == []
    assert list(OutboxMessage.objects.values_list("status", "attempts")) == [("manual", 2)]
    assert any("could not be delivered" in r.getMessage() for r in caplog.records)


def test_a_redirect_is_not_followed(webhook, settings):
    settings.KAMI_ADMIN_EMAIL = ""
    webhook.redirect_to = "http://127.0.0.1:9/elsewhere"
    admin_alert(event="low_stock", dedupe_key="p1", params=LOW_STOCK)
    run_once("w1")
    [row] = OutboxMessage.objects.all()
    assert row.status == "failed" and "HTTP 302" in row.last_error and webhook.requests == 1


def test_signature_is_hmac_of_timestamp_and_raw_body():
    # the documented recipe, computed independently
    body = b'{"event":"low_stock"}'
    header = webhook_signature(secret="s3cret", body=body, timestamp=1_700_000_000)
    assert header == "t=1700000000,v1=" + hmac.new(b"s3cret", b"1700000000." + body, "sha256").hexdigest()
    assert verify("s3cret", header, body, tolerance=10**10) == ""
    assert verify("s3cret", header, body + b" ", tolerance=10**10) == "signature mismatch"
    assert verify("s3cret", header, body, tolerance=60) == "timestamp outside the tolerance"


def test_no_secret_in_any_row_or_log_line(smtp, telegram, webhook, settings, caplog):
    # given: Telegram answering with the token in its error text, then unreachable; webhook down
    settings.KAMI_DELIVERY_BACKOFF = [10, 10, 10]
    telegram.token = "some-other-token"  # every request gets a 404 that echoes the request path
    webhook.fail_with = 503
    # when: an alert goes through failures on both channels, then succeeds
    with caplog.at_level(logging.DEBUG):
        admin_alert(event="low_stock", dedupe_key="p1", params=LOW_STOCK)
        run_once("w1")
        settings.KAMI_TELEGRAM_API_BASE = f"http://127.0.0.1:{free_port()}"
        clock.travel(timedelta(seconds=11))
        run_once("w2")
        telegram.token, webhook.fail_with = TOKEN, None
        settings.KAMI_TELEGRAM_API_BASE = telegram.base_url
        clock.travel(timedelta(seconds=22))
        run_once("w3")
    # then
    assert {c: m.status for c, m in alert_rows().items()} == {"email": "sent", "telegram": "sent", "webhook": "sent"}
    assert any("HTTP Request" in r.getMessage() for r in caplog.records)  # httpx did log its requests…
    stored = json.dumps([list(OutboxMessage.objects.values()), list(DeliveryAttempt.objects.values()),
                         list(AuditLog.objects.values())], default=str)
    logged = "\n".join(r.getMessage() + str(r.exc_text or "") for r in caplog.records)
    for secret in (TOKEN, TOKEN.split(":")[1], SECRET, "team=ops"):
        assert secret not in stored, secret
        assert secret not in logged, secret  # …with the token masked
    assert "404" in DeliveryAttempt.objects.filter(message__channel="telegram").order_by("id").first().error
