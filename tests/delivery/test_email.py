"""The email channel against a real SMTP server: what the buyer and the merchant receive."""
from __future__ import annotations

import logging
from urllib.parse import parse_qs, urlparse

import pytest
from django.urls import reverse

from kami.delivery.links import order_link_signed, order_link_verify
from kami.delivery.models import OutboxMessage
from kami.delivery.services import admin_alert
from kami.delivery.worker import run_once
from tests.delivery.conftest import keys_message


def parts(message):
    text = message.get_body(preferencelist=("plain",)).get_content()
    html = message.get_body(preferencelist=("html",)).get_content()
    return text, html


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("locale, greeting, heading", [
    ("en", "Thank you for your order at Kami.", "Your keys:"),
    ("zh-hans", "感谢您在 Kami 购买。", "您的卡密："),
])
def test_order_email_carries_keys_link_and_stable_message_id(smtp, fulfilled_order, locale, greeting, heading):
    # given
    order = fulfilled_order(keys=["AAAA-1111", "B<&>-2222"], locale=locale, name="Steam Wallet 100")
    row = keys_message(order)
    # when
    assert run_once("w1") == 1
    # then
    [mail] = smtp.to("buyer@example.com")
    text, html = parts(mail)
    link = order_link_signed(order.order_no)
    assert order.order_no in str(mail["Subject"])
    assert greeting in text and heading in text and heading in html
    assert "AAAA-1111" in text and "B<&>-2222" in text
    assert "AAAA-1111" in html and "B&lt;&amp;&gt;-2222" in html and "B<&>" not in html
    assert "Steam Wallet 100 × 2" in text and "Steam Wallet 100 × 2" in html
    assert link in text and f'href="{link}"' in html
    row.refresh_from_db()
    assert str(mail["Message-ID"]) == row.message_id == f"<kami-outbox-{row.pk}@testserver>"
    assert (row.status, row.attempts, row.last_error) == ("sent", 1, "")


@pytest.mark.django_db(transaction=True)
def test_order_link_is_the_order_page_with_a_verifiable_signature(smtp, fulfilled_order):
    order = fulfilled_order()
    run_once("w1")
    [mail] = smtp.to("buyer@example.com")
    text, _ = parts(mail)
    url = urlparse(next(line for line in text.splitlines() if "sig=" in line).strip())
    assert url.path == reverse("order-page", args=[order.order_no])
    assert order_link_verify(order.order_no, parse_qs(url.query)["sig"][0])


@pytest.mark.django_db(transaction=True)
def test_refused_recipient_goes_straight_to_manual_and_alerts_the_merchant(smtp, fulfilled_order):
    # given: the mail server says the buyer's address does not exist
    smtp.refuse["nobody@example.com"] = "550 5.1.1 <nobody@example.com>: no such user"
    order = fulfilled_order(email="nobody@example.com")
    # when
    run_once("w1")
    # then: no retry can fix that
    row = keys_message(order)
    assert (row.status, row.attempts) == ("manual", 1)
    assert "550" in row.last_error
    alert = OutboxMessage.objects.get(dedupe_key=f"alert:delivery_manual:{row.pk}:email")
    assert alert.target == "owner@shop.test"
    # when: the next pass sends the alert
    run_once("w1")
    # then
    [mail] = smtp.to("owner@shop.test")
    assert order.order_no in str(mail["Subject"])
    text, html = parts(mail)
    assert "nobody@example.com" in text and "AAAA-1111" not in mail.as_string()
    assert smtp.to("nobody@example.com") == []


@pytest.mark.django_db(transaction=True)
def test_temporarily_refused_recipient_is_retried(smtp, fulfilled_order):
    smtp.refuse["busy@example.com"] = "450 4.2.1 mailbox busy, try later"
    order = fulfilled_order(email="busy@example.com")
    run_once("w1")
    row = keys_message(order)
    assert (row.status, row.attempts) == ("failed", 1)
    assert "450" in row.last_error


@pytest.mark.django_db(transaction=True)
def test_admin_alert_email(smtp, settings):
    settings.KAMI_ADMIN_LANGUAGE = "en"
    admin_alert(event="low_stock", dedupe_key="p1",
                params={"product": "steam-100", "product_name": "Steam 100", "left": 2, "threshold": 5})
    assert run_once("w1") == 1
    [mail] = smtp.to("owner@shop.test")
    assert str(mail["Subject"]) == "[Kami] Low stock: steam-100 has 2 keys left"
    assert "Import more keys." in parts(mail)[0]
    assert OutboxMessage.objects.get().status == "sent"


@pytest.mark.django_db(transaction=True)
def test_without_admin_email_alerts_go_to_the_log(smtp, settings, caplog):
    settings.KAMI_ADMIN_EMAIL, settings.KAMI_ADMIN_LANGUAGE = "", "en"
    admin_alert(event="flagged", dedupe_key="o1", text="flagged.amount_mismatch",
                params={"order_no": "1", "paid": "1.00 CNY", "expected": "2.00 CNY"})
    with caplog.at_level(logging.WARNING, logger="kami.alerts"):
        run_once("w1")
    assert any("Order 1 needs review" in r.getMessage() and r.levelno == logging.WARNING for r in caplog.records)
    assert OutboxMessage.objects.get().status == "sent"
    assert smtp.messages == []
