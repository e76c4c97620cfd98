"""The bot's settings as the rest of the app reads them: stored by `kami telegram set` (token
encrypted), or from the environment (KAMI_TELEGRAM_SHOP_TOKEN, _SHOP_WEBHOOK, _ADMINS), which wins.
Off when no token is set. Nothing here logs or returns the token anywhere but to its caller."""
from __future__ import annotations

from django.conf import settings

from kami.core.crypto import keyring
from kami.payments.gateways.telegram_stars import webhook_secret as stars_webhook_secret
from kami.telegram.models import BotSettings

AAD = b"telegram:bot-token"


def bot_settings() -> BotSettings:
    return BotSettings.objects.filter(pk=1).first() or BotSettings(pk=1)


def bot_token() -> str:
    """The storefront bot's token; '' when the bot is off."""
    if settings.KAMI_TELEGRAM_SHOP_TOKEN:
        return settings.KAMI_TELEGRAM_SHOP_TOKEN
    row = bot_settings()
    if not row.token_ciphertext:
        return ""
    return keyring().decrypt(row.token_key_id, bytes(row.token_ciphertext), aad=AAD).reveal()


def webhook_mode() -> bool:
    return settings.KAMI_TELEGRAM_SHOP_WEBHOOK or bot_settings().webhook


def webhook_secret(token: str) -> str:
    """What Telegram sends back in X-Telegram-Bot-Api-Secret-Token: derived from the token, so
    there is no second secret to store, and a new token changes it. One derivation, shared with
    the Stars gateway, which checks the same header on payment updates."""
    return stars_webhook_secret(token)


def admin_ids() -> frozenset[int]:
    text = settings.KAMI_TELEGRAM_ADMINS or bot_settings().admins
    return frozenset(int(part) for part in text.replace(" ", "").split(",") if part.lstrip("-").isdigit())
