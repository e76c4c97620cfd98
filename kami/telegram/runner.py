"""Getting updates: register the webhook (`kami serve`, `kami telegram set … webhook`), or poll
(`kami telegram poll`) for shops without a public URL. Failures are logged with the token scrubbed
(bot_call) and retried with a growing pause."""
from __future__ import annotations

import logging
import threading
import time

from django.conf import settings
from django.urls import reverse

from kami.delivery.channels.telegram import BotApiFailure, bot_call
from kami.telegram.config import webhook_secret
from kami.telegram.stars import is_payment, payment_take_polled

log = logging.getLogger("kami.telegram")
ALLOWED = '["message","callback_query","pre_checkout_query"]'


def webhook_url() -> str:
    return f"{settings.KAMI_BASE_URL}{reverse('telegram-webhook')}"


def webhook_register(*, token: str) -> str:
    """Tell Telegram where to post updates, with the secret it must send back; returns the URL."""
    url = webhook_url()
    bot_call(token=token, method="setWebhook",
             data={"url": url, "secret_token": webhook_secret(token), "allowed_updates": ALLOWED})
    return url


def poll(*, token: str, once: bool = False, wait: int = 25, stop: threading.Event | None = None) -> int:
    """Long-poll getUpdates and handle each update; returns how many were handled. `once`: one
    round (tests, cron). A webhook set earlier is removed first: Telegram refuses getUpdates then."""
    from kami.telegram.dispatch import update_handle  # aiogram's types take seconds to import: only when polling

    bot_call(token=token, method="deleteWebhook")
    offset, handled, pause = 0, 0, 1.0
    while not (stop and stop.is_set()):
        try:
            updates = bot_call(token=token, method="getUpdates", timeout=wait + 10,
                               data={"offset": offset, "timeout": 0 if once else wait, "allowed_updates": ALLOWED})
            pause = 1.0
        except BotApiFailure as exc:
            if once:
                raise
            log.warning("telegram: getUpdates failed (%s); trying again in %.0f s", exc, pause)
            time.sleep(pause)
            pause = min(pause * 2, 60)
            continue
        for update in updates or []:
            if is_payment(update) and payment_take_polled(update, token=token).status_code != 200:
                break  # not taken (the database away…): fetch it again on the next round
            offset = max(offset, int(update.get("update_id", 0)) + 1)
            if not is_payment(update):
                update_handle(update, token=token)
            handled += 1
        if once:
            break
    if offset:  # confirm the last batch, so a restart does not fetch it again (dedupe would skip it anyway)
        try:
            bot_call(token=token, method="getUpdates", data={"offset": offset, "timeout": 0})
        except BotApiFailure:
            pass
    return handled


def serve_hook() -> str:
    """What `kami serve` does for the bot at start: in webhook mode, (re-)register the webhook at
    KAMI_BASE_URL (which Telegram wants on https). A line for the merchant; '' when the bot is off."""
    from kami.telegram.config import bot_token, webhook_mode

    token = bot_token()
    if not token:
        return ""
    if not webhook_mode():
        return "Telegram bot: polling mode; run `kami telegram poll` beside the server"
    try:
        return f"Telegram bot: webhook registered at {webhook_register(token=token)}"
    except BotApiFailure as exc:
        log.warning("telegram: the webhook could not be registered: %s", exc)
        return f"Telegram bot: webhook NOT registered ({exc}); Telegram needs KAMI_BASE_URL on https"
