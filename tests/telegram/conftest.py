"""The bot is tested through its real edges: updates posted to the webhook (with Telegram's
secret-token header) or fetched by the long-poll runner, answers sent to a loopback Bot API."""
from __future__ import annotations

import pytest

from kami.core import clock
from kami.telegram.config import webhook_secret
from kami.telegram.services import bot_settings_set
from tests.telegram.bot_play import FakeBotApi

TOKEN = "7012345678:AAH-shop-bot-token-0123456789abcdef"


@pytest.fixture
def bot_api(settings):
    fake = FakeBotApi(token=TOKEN).start()
    settings.KAMI_TELEGRAM_API_BASE = fake.base_url
    yield fake
    fake.stop()


@pytest.fixture
def bot(bot_api):
    """The bot on, in webhook mode, with admin chat 900."""
    bot_settings_set(token=TOKEN, webhook=True, admins="900", actor="test")
    return bot_api


@pytest.fixture(autouse=True)
def real_time():
    clock.travel(None)
    yield
    clock.travel(None)


def post_update(client, update: dict, *, secret: str | None = None):
    return client.post("/telegram/webhook", update, content_type="application/json",
                       HTTP_X_TELEGRAM_BOT_API_SECRET_TOKEN=webhook_secret(TOKEN) if secret is None else secret)
