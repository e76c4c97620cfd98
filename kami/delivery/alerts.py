"""Admin alert texts, in the merchant's language (KAMI_ADMIN_LANGUAGE, default zh-hans).

Callers name an event and give plain values (order number, product slug, counts); the text lives
here, once, with its translation in kami/delivery/locale. The alert is rendered when it is queued
and the rendered subject and body are what every channel sends (email, Telegram, webhook, log)
and what the back office shows.

Which channels an alert goes to is read from settings at the time it is queued; their secrets
(bot token, webhook secret) are read only when sending and never stored.
"""
from __future__ import annotations

import logging

from django.conf import settings
from django.utils import translation
from django.utils.translation import gettext, gettext_noop as N_

from kami.delivery.channels.webhook import webhook_host

log = logging.getLogger("kami.delivery")

# text key → (subject, body). The text key is the event, or "<event>.<variant>".
ALERTS: dict[str, tuple[str, str]] = {
    "low_stock": (
        N_("Low stock: %(product)s has %(left)s keys left"),
        N_("%(product_name)s (%(product)s) is below its threshold of %(threshold)s keys. Import more keys."),
    ),
    "awaiting_stock": (
        N_("Order %(order_no)s is paid but %(product)s is out of stock"),
        N_("Import keys for %(product)s: the order is fulfilled automatically when they arrive."),
    ),
    "awaiting_manual": (
        N_("Order %(order_no)s is paid: deliver %(product)s × %(quantity)s by hand"),
        N_("Deliver %(product_name)s × %(quantity)s for order %(order_no)s, then enter what you delivered in the "
           "back office (fulfil manually).%(answers)s"),
    ),
    "flagged.amount_mismatch": (
        N_("Order %(order_no)s needs review: the amount paid does not match"),
        N_("Paid %(paid)s, expected %(expected)s. Refund the payment, or settle the difference with the buyer "
           "and deliver by hand."),
    ),
    "flagged.paid_after_expiry": (
        N_("Order %(order_no)s needs review: paid after it expired"),
        N_("Paid at %(paid_at)s, after the order expired. Refund it or deliver by hand."),
    ),
    "flagged.coupon_used_up": (
        N_("Order %(order_no)s needs review: coupon %(coupon)s was used up before it was paid"),
        N_("Coupon %(coupon)s reached its limit of %(limit)s uses between checkout and payment, so this paid "
           "order was not delivered. Refund it, or unflag it to deliver it anyway (from stock; the coupon's count "
           "stays at its limit)."),
    ),
    "duplicate_payment": (
        N_("Order %(order_no)s was paid twice"),
        N_("Trade %(trade_no)s on %(gateway)s paid order %(order_no)s again. Refund it."),
    ),
    "delivery_manual.order_keys": (
        N_("Delivery failed: the keys of order %(order_no)s could not be sent by %(channel)s"),
        N_("The keys of order %(order_no)s could not be sent to %(target)s after %(attempts)s attempt(s).\n"
           "Last error: %(error)s\n\n"
           "The buyer can still see them on the order page. Fix the cause (mail settings, address), then "
           "retry delivery #%(message_id)s from the delivery queue or send the buyer the order link by hand."),
    ),
    "delivery_manual.mint_keys": (
        N_("Order %(order_no)s is paid but its keys could not be minted: %(product)s's mint URL kept failing"),
        N_("Kami asked %(target)s for %(quantity)s key(s) of %(product)s for order %(order_no)s, %(attempts)s "
           "time(s), without a usable answer.\nLast error: %(error)s\n\n"
           "The order is waiting. Fix the merchant system, then retry delivery #%(message_id)s from the delivery "
           "queue (it sends the same idempotency keys again); or deliver the keys by hand (fulfil manually), or "
           "refund the order."),
    ),
    "delivery_manual": (
        N_("Delivery failed: message #%(message_id)s (%(kind)s) could not be sent by %(channel)s"),
        N_("Message #%(message_id)s (%(kind)s) could not be sent to %(target)s after %(attempts)s attempt(s).\n"
           "Last error: %(error)s\n\n"
           "Fix the cause, then retry delivery #%(message_id)s from the delivery queue, or mark it handled."),
    ),
    "webhook_disabled": (
        N_("Webhook endpoint #%(endpoint)s (%(host)s) was disabled: it kept failing"),
        N_("Event %(msg_id)s could not be delivered to %(host)s after %(attempts)s attempt(s) over %(days)s days.\n"
           "Last error: %(error)s\n\n"
           "No more events are sent to it. Fix the receiver, then enable the endpoint and redeliver its failed "
           "events from the back office (Webhooks)."),
    ),
}

# event → its name for people (the event code itself stays in English: receivers match on it)
EVENT_NAMES: dict[str, str] = {
    "low_stock": N_("Low stock"),
    "awaiting_stock": N_("Order awaiting stock"),
    "awaiting_manual": N_("Order to deliver by hand"),
    "flagged": N_("Payment flagged for review"),
    "duplicate_payment": N_("Duplicate payment"),
    "delivery_manual": N_("Delivery needs a human"),
    "webhook_disabled": N_("Webhook endpoint disabled"),
}


def event_name(event: str) -> str:
    """The event's name in the active language (the code itself when it has none)."""
    return gettext(EVENT_NAMES[event]) if event in EVENT_NAMES else event


def admin_language() -> str:
    code = settings.KAMI_ADMIN_LANGUAGE
    return code if code in dict(settings.LANGUAGES) else settings.LANGUAGE_CODE


def alert_render(*, text: str, params: dict) -> tuple[str, str]:
    """(subject, body) of the catalogue entry `text`, in the admin language. Raises KeyError for a
    text the catalogue does not have (a programming error: add it above, with its translation)."""
    subject, body = ALERTS[text]
    values = _Values({name: "" if value is None else value for name, value in params.items()})
    with translation.override(admin_language()):
        return gettext(subject) % values, gettext(body) % values


class _Values(dict):
    """A missing value shows as "?" (and is logged) instead of failing the caller's transaction
    over an alert's wording."""

    def __missing__(self, key: str) -> str:
        log.warning("admin alert text needs a value for %r that its caller did not give", key)
        return "?"


def alert_channels() -> list[tuple[str, str]]:
    """(channel, target) for every configured alert channel; the log when none is. The target is
    what the back office shows: an address, a chat id, the webhook's host — never a secret."""
    found = []
    if settings.KAMI_ADMIN_EMAIL:
        found.append(("email", settings.KAMI_ADMIN_EMAIL))
    if settings.KAMI_TELEGRAM_BOT_TOKEN and settings.KAMI_TELEGRAM_CHAT_ID:
        found.append(("telegram", str(settings.KAMI_TELEGRAM_CHAT_ID)))
    if settings.KAMI_ALERT_WEBHOOK_URL and settings.KAMI_ALERT_WEBHOOK_SECRET:
        found.append(("webhook", webhook_host(settings.KAMI_ALERT_WEBHOOK_URL)))
    return found or [("log", "log")]
