"""The Telegram channel: admin alerts through a bot's `sendMessage` (Bot API), to one chat; and
`bot_call`, the Bot API plumbing every Telegram use shares (telegram_chat, kami.telegram).

Settings: KAMI_TELEGRAM_BOT_TOKEN (from @BotFather), KAMI_TELEGRAM_CHAT_ID (a user, group or
channel id the bot may write to), KAMI_TELEGRAM_API_BASE (default https://api.telegram.org; tests
point it at a loopback fake). The token is part of the request URL, so it is read from settings
only here, at send time, never stored in the outbox, and scrubbed from every error text; httpx's
request log line is masked below.
"""
from __future__ import annotations

import logging
import re

import httpx
from django.conf import settings

from kami.shop.selectors import shop_settings_get
from kami.delivery.channels import PermanentFailure, TemporaryFailure
from kami.delivery.models import OutboxMessage

TIMEOUT_SECONDS = 10
MAX_TEXT = 4096  # Telegram refuses longer messages


class TelegramChannel:
    name = "telegram"

    def send(self, message: OutboxMessage) -> None:
        if message.kind != "admin_alert":
            raise PermanentFailure(f"the telegram channel carries admin alerts only, not {message.kind!r}")
        token = settings.KAMI_TELEGRAM_BOT_TOKEN
        chat_id = message.target or settings.KAMI_TELEGRAM_CHAT_ID
        if not token:
            raise PermanentFailure("KAMI_TELEGRAM_BOT_TOKEN is not set any more: set it, then retry this alert")
        bot_call(token=token, method="sendMessage",
                 data={"chat_id": chat_id, "text": alert_text(message), "disable_web_page_preview": "true"})


class BotApiFailure(TemporaryFailure):
    """The Bot API refused a call or could not be reached; `status` is its HTTP status (0: no answer).
    The text has the token scrubbed."""

    def __init__(self, text: str, *, status: int = 0, description: str = ""):
        super().__init__(text)
        self.status, self.description = status, description


def bot_call(*, token: str, method: str, data: dict | None = None, files: dict | None = None,
             timeout: float = TIMEOUT_SECONDS) -> object:
    """One Bot API call (form-encoded, multipart with `files`); its `result`. Shared by the alert
    channel, the buyer's chat channel and the bot storefront (the Stars gateway module calls
    through kami.payments.toolkit instead: gateway modules import no model, and this one does)."""
    base = settings.KAMI_TELEGRAM_API_BASE.rstrip("/")
    try:
        response = httpx.post(f"{base}/bot{token}/{method}", data=data or {}, files=files, timeout=timeout)
    except httpx.HTTPError as exc:
        raise BotApiFailure(_scrub(f"telegram: {type(exc).__name__} talking to {base}: {exc}", token)) from None
    if response.status_code // 100 != 2 or not _ok(response):
        description = _scrub(_description(response), token)
        raise BotApiFailure(f"telegram answered HTTP {response.status_code}: {description}",
                            status=response.status_code, description=description)
    return response.json().get("result")


def alert_text(message: OutboxMessage) -> str:
    payload = message.payload or {}
    text = f"[{shop_settings_get().name}] {payload.get('subject', '')}\n\n{payload.get('body', '')}".strip()
    return text if len(text) <= MAX_TEXT else text[:MAX_TEXT - 1] + "…"


def _ok(response: httpx.Response) -> bool:
    try:
        return response.json().get("ok") is True
    except (ValueError, AttributeError):
        return False


def _description(response: httpx.Response) -> str:
    try:
        text = str(response.json().get("description", ""))
    except (ValueError, AttributeError):
        text = response.text
    return " ".join(text.split())[:160] or "(no description)"


def _scrub(text: str, token: str) -> str:
    text = text.replace(token, "***") if token else text
    return _TOKEN_IN_PATH.sub("/bot***/", text)


_TOKEN_IN_PATH = re.compile(r"/bot[^/\s]+/")


class _HideToken(logging.Filter):
    """httpx logs every request URL at INFO; a Bot API URL carries the token."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(_TOKEN_IN_PATH.sub("/bot***/", str(a)) if "/bot" in str(a) else a for a in record.args)
        if isinstance(record.msg, str) and "/bot" in record.msg:
            record.msg = _TOKEN_IN_PATH.sub("/bot***/", record.msg)
        return True


if not any(isinstance(f, _HideToken) for f in logging.getLogger("httpx").filters):
    logging.getLogger("httpx").addFilter(_HideToken())
