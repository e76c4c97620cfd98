"""Every email Kami sends, rendered in zh-hans and in en: an HTML and a text part, the shop's
name, the key where the product says so (and nowhere else), and no stray English in the Chinese
mail (nor Chinese in the English one). Admin alerts follow KAMI_ADMIN_LANGUAGE; buyer emails
follow the order's language."""
from __future__ import annotations

import logging
import re
from pathlib import Path

import pytest
from django.test import Client
from django.utils import translation

from kami.delivery.alerts import ALERTS
from kami.delivery.links import order_link_signed
from kami.delivery.models import OutboxMessage
from kami.delivery.services import admin_alert
from kami.delivery.worker import run_once
from kami.fulfilment.refund import order_refund
from kami.fulfilment.replace import order_key_replace
from kami.orders.models import OrderKey
from tests.factories import add_keys, make_orders
from tests.sandbox_play import enable_sandbox, sandbox_notify

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.sqlite_only]  # templates: the same on every engine

SHOP = "Starlight 星光卡铺"
LANGUAGES = ["zh-hans", "en"]
# Words of Kami's own English texts; none may be left in a Chinese email once data is taken out.
ENGLISH = re.compile(r"\b(Order|order|Your|your|Thank|[Kk]eys?|[Rr]efund(ed)?|stock|Import|[Dd]eliver(y|ed)?|Event|"
                     r"Sent|attempts?|Product|Reason|replaced|page|[Pp]aid|needs|review|human|Low|Trade|Message|Fix|"
                     r"[Ee]rror|Last|hand|queue|threshold|twice|expired|Keep|private|link|works|use|number)\b")
CJK = re.compile(r"[\u4e00-\u9fff]")
URL = re.compile(r"https?://[^\s\"<]+")

# One example per alert text, with the values its caller gives (kami/fulfilment, the worker).
ALERT_EXAMPLES = {
    "low_stock": ("low_stock", {"product": "steam-100", "product_name": "Steam 100", "left": 2, "threshold": 5}),
    "awaiting_stock": ("awaiting_stock", {"order_no": "2611270001", "product": "steam-100"}),
    "awaiting_manual": ("awaiting_manual", {"order_no": "2611270002", "product": "topup", "product_name": "Top-up",
                                            "quantity": 2, "answers": "\nQQ: 12345"}),
    "flagged.amount_mismatch": ("flagged", {"order_no": "2611270003", "paid": "1.00 CNY", "expected": "29.90 CNY"}),
    "flagged.paid_after_expiry": ("flagged", {"order_no": "2611270004", "paid_at": "2026-11-27 10:00:00 UTC"}),
    "flagged.coupon_used_up": ("flagged", {"order_no": "2611270007", "coupon": "SPRING50", "limit": 3}),
    "duplicate_payment": ("duplicate_payment", {"order_no": "2611270005", "trade_no": "T-9", "gateway": "epay"}),
    "delivery_manual.order_keys": ("delivery_manual", {"order_no": "2611270006", "message_id": 41, "kind": "order_keys",
                                                       "channel": "email", "target": "b@example.com", "attempts": 12,
                                                       "error": "SMTP 451 4.3.0 try again later"}),
    "delivery_manual.mint_keys": ("delivery_manual", {"order_no": "2611270007", "message_id": 43, "kind": "mint_keys",
                                                      "channel": "mint", "target": "erp.example.com", "attempts": 7,
                                                      "error": "mint URL erp.example.com answered HTTP 500",
                                                      "product": "game-card", "quantity": 2}),
    "delivery_manual": ("delivery_manual", {"message_id": 42, "kind": "order_refunded", "channel": "email",
                                            "target": "b@example.com", "attempts": 12, "error": "SMTP 451 busy"}),
    "webhook_disabled": ("webhook_disabled", {"endpoint": 3, "host": "erp.example.com", "msg_id": "msg_2611270008",
                                              "attempts": 14, "days": 6.9, "error": "HTTP 502"}),
}


@pytest.fixture(autouse=True)
def shop(settings):
    settings.KAMI_SHOP_NAME = SHOP
    enable_sandbox()


def parts(mail) -> tuple[str, str, str]:
    assert [kind for _, kind in mail.alternatives] == ["text/html"], "every email has an HTML part"
    return mail.subject, mail.body, mail.alternatives[0][0]


def check_language(language: str, texts: list[str], data: list[str]) -> None:
    for text in texts:
        assert SHOP in text
        text = URL.sub(" ", text)
        for value in sorted((str(d) for d in data + [SHOP]), key=len, reverse=True):
            text = text.replace(value, " ")
        if language == "zh-hans":
            assert CJK.search(text), "Chinese text expected"
            assert not ENGLISH.findall(re.sub(r"<[^>]+>", " ", text)), text
        else:
            assert not CJK.search(text), text


def missing_values(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if "did not give" in r.getMessage()]


def send_and_get(mailoutbox, to: str):
    before = len(mailoutbox)
    run_once("render")
    new = [m for m in mailoutbox[before:] if to in m.to]
    assert len(new) == 1, [m.subject for m in mailoutbox]
    return new[0]


def paid_order(make_product, *, language, keys=("KEY-AAAA-1111",), email_keys=True, stock=()):
    product = make_product(name="Steam 100")
    product.email_keys = email_keys
    product.instructions = "Steam → Redeem" if language == "en" else "打开 Steam → 兑换"
    product.save()
    add_keys(product, list(keys) + list(stock))
    (order,) = make_orders(product, [len(keys)])
    order.locale = language
    order.save(update_fields=["locale"])
    assert sandbox_notify(Client(), order_no=order.order_no, amount=str(order.amount)).content == b"ok"
    order.refresh_from_db()
    return order


@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.parametrize("email_keys", [True, False], ids=["keys", "link-only"])
def test_order_keys_email(make_product, mailoutbox, language, email_keys):
    order = paid_order(make_product, language=language, email_keys=email_keys)
    subject, text, html = parts(send_and_get(mailoutbox, order.email))
    assert ("KEY-AAAA-1111" in text) is email_keys and ("KEY-AAAA-1111" in html) is email_keys
    assert order_link_signed(order.order_no) in text
    check_language(language, [subject, text, html],
                   [order.order_no, "Steam 100", "KEY-AAAA-1111", "Steam → Redeem", "Steam"])


@pytest.mark.parametrize("language", LANGUAGES)
def test_refund_email(make_product, mailoutbox, language):
    order = paid_order(make_product, language=language)
    run_once("keys")
    reason = "卡密无法使用" if language == "zh-hans" else "the key did not work"
    order_refund(order_no=order.order_no, reason=reason, actor="test")
    subject, text, html = parts(send_and_get(mailoutbox, order.email))
    assert "KEY-AAAA-1111" not in text + html and reason in text and reason in html
    assert "29.90" in text and "29.90" in html
    check_language(language, [subject, text, html], [order.order_no, "Steam 100", reason])


@pytest.mark.parametrize("language", LANGUAGES)
def test_key_replaced_email(make_product, mailoutbox, language):
    order = paid_order(make_product, language=language, stock=["KEY-NEW-2222"])
    run_once("keys")
    old = OrderKey.objects.get(order=order).key_id
    order_key_replace(order_no=order.order_no, key_pk=old, reason="buyer says it is used", actor="test")
    subject, text, html = parts(send_and_get(mailoutbox, order.email))
    assert "KEY-NEW-2222" in text and "KEY-NEW-2222" in html
    assert "KEY-AAAA-1111" not in text + html
    check_language(language, [subject, text, html], [order.order_no, "Steam 100", "KEY-NEW-2222"])


@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.parametrize("text_key", sorted(ALERT_EXAMPLES))
def test_admin_alert_email(settings, mailoutbox, language, text_key, caplog):
    # given
    settings.KAMI_ADMIN_LANGUAGE = language
    event, params = ALERT_EXAMPLES[text_key]
    # when
    with caplog.at_level(logging.WARNING, logger="kami.delivery"):
        admin_alert(event=event, dedupe_key="x", text=text_key, params=params)
    subject, text, html = parts(send_and_get(mailoutbox, "owner@shop.test"))
    # then
    assert not missing_values(caplog), "every value the text needs was given"
    assert subject.startswith(f"[{SHOP}] ") and params.get("order_no", "") in subject
    data = [str(v) for v in params.values()] + [event, settings.KAMI_BASE_URL]
    check_language(language, [subject, text, html], data)
    assert "KEY-" not in text + html


def test_every_alert_text_has_an_example_and_a_translation():
    assert set(ALERT_EXAMPLES) == set(ALERTS)
    with translation.override("zh-hans"):
        missing = [s for pair in ALERTS.values() for s in pair if translation.gettext(s) == s]
    assert missing == []


@pytest.mark.parametrize("language", LANGUAGES)
def test_alerts_raised_by_the_real_paths_are_complete(make_product, settings, caplog, language):
    # given: a product with a low-stock threshold, and orders paid wrongly, twice, and beyond stock
    settings.KAMI_ADMIN_LANGUAGE = language
    client = Client()
    product = make_product(name="Steam 100", low_stock=2)
    add_keys(product, ["K-1", "K-2"])
    ok, short, wrong = make_orders(product, [1, 2, 1])  # two keys: `ok` takes one, `short` waits
    # when
    with caplog.at_level(logging.WARNING, logger="kami.delivery"):
        sandbox_notify(client, order_no=ok.order_no, amount=str(ok.amount))
        sandbox_notify(client, order_no=ok.order_no, amount=str(ok.amount), trade_no="T-second")
        sandbox_notify(client, order_no=short.order_no, amount=str(short.amount))
        sandbox_notify(client, order_no=wrong.order_no, amount="0.01")
    # then
    alerts = {m.payload["event"]: m.payload for m in OutboxMessage.objects.filter(kind="admin_alert")}
    assert set(alerts) == {"low_stock", "duplicate_payment", "awaiting_stock", "flagged"}
    assert not missing_values(caplog)
    for payload in alerts.values():
        assert payload["language"] == language
        check_language(language, [f"{SHOP} {payload['subject']}\n{payload['body']}"],
                       [ok.order_no, short.order_no, wrong.order_no, product.slug, "Steam 100", "T-second", "sandbox",
                        "0.01 CNY", "29.90 CNY"])


def test_every_event_raised_in_the_code_has_its_text():
    # A new admin_alert(event="…") must come with its text in kami/delivery/alerts.py (and its
    # translation), or the merchant reads it untranslated.
    kami = Path(__file__).resolve().parents[2] / "kami"
    raised = {m.group(1) for path in kami.rglob("*.py")
              for m in re.finditer(r"admin_alert\(\s*event=\"(\w+)\"", path.read_text(encoding="utf-8"))}
    assert {"low_stock", "awaiting_stock", "flagged", "duplicate_payment", "delivery_manual"} <= raised
    missing = [e for e in raised if e not in ALERTS and not any(k.startswith(f"{e}.") for k in ALERTS)]
    assert missing == []
