"""Setting the bot up: the token stored encrypted and never printed, the webhook registered with
its secret, the secret checked on every request, long polling, and the merchant's commands for
admin chats only."""
from __future__ import annotations

import io

import pytest
from django.core.management import call_command

from kami.audit.models import AuditLog
from kami.telegram.config import bot_token, webhook_secret
from kami.telegram.models import BotSettings, SeenUpdate
from tests.factories import add_keys
from tests.telegram.bot_play import Buyer
from tests.telegram.conftest import TOKEN, post_update

pytestmark = pytest.mark.django_db(transaction=True)


def kami(*args) -> str:
    out = io.StringIO()
    call_command(*args, stdout=out, stderr=out)
    return out.getvalue()


def test_set_stores_the_token_encrypted_and_registers_the_webhook(bot_api, caplog):
    # when
    output = kami("telegram", "set", f"token={TOKEN}", "webhook", "admins=900,901")
    # then: the webhook points at Kami with the derived secret
    assert bot_api.webhook["url"] == "http://testserver/telegram/webhook"
    assert bot_api.webhook["secret_token"] == webhook_secret(TOKEN)
    assert "webhook registered at http://testserver/telegram/webhook" in output
    # and the token is nowhere in clear: not in the row, the output, the log or the audit
    row = BotSettings.objects.get()
    assert TOKEN.encode() not in bytes(row.token_ciphertext) and row.admins == "900,901"
    assert bot_token() == TOKEN
    assert TOKEN not in output + caplog.text + str(list(AuditLog.objects.values_list("detail", flat=True)))
    assert TOKEN not in kami("telegram", "status")


def test_the_bot_is_off_by_default(client, bot_api):
    # when
    response = post_update(client, Buyer(user_id=555).says("/start"))
    # then
    assert response.status_code == 404 and bot_api.calls == []
    assert "telegram: off" in kami("telegram", "status")


def test_a_request_without_the_secret_header_is_refused(client, bot):
    # when
    wrong = post_update(client, Buyer(user_id=555).says("/start"), secret="guess")
    missing = client.post("/telegram/webhook", Buyer(user_id=555).says("/start"), content_type="application/json")
    # then
    assert (wrong.status_code, missing.status_code) == (403, 403)
    assert bot.calls == [] and SeenUpdate.objects.count() == 0


def test_poll_fetches_updates_and_answers_them(bot_api, make_product):
    # given: polling mode, a product, and a buyer's /start waiting at Telegram
    kami("telegram", "set", f"token={TOKEN}", "poll")
    make_product(name="Steam Wallet 100")
    bot_api.queue(Buyer(user_id=555).says("/start"))
    # when
    output = kami("telegram", "poll", "--once")
    # then
    assert "1 update(s) handled" in output
    assert [m for m, _ in bot_api.calls][:2] == ["deleteWebhook", "getUpdates"]
    assert bot_api.texts(555) == ["Choose a product:"]


def test_merchant_commands_answer_admin_chats_only(client, bot, make_product):
    # given
    product = make_product(slug="steam-100", name="Steam Wallet 100")
    add_keys(product, ["K-1", "K-2"])
    # when
    post_update(client, Buyer(user_id=900).says("/stock"))
    post_update(client, Buyer(user_id=555).says("/stock"))
    # then
    assert bot.texts(900) == ["Stock (available / sold / awaiting):\nsteam-100: 2 / 0 / 0"]
    assert bot.texts(555)[0].startswith("/start shows the catalogue")


def test_serve_registers_the_webhook_when_the_bot_is_in_webhook_mode(bot):
    # given: the bot set up in webhook mode (the fixture), no webhook at Telegram yet
    from kami.telegram.runner import serve_hook

    assert bot.webhook == {}
    # when: `kami serve` starts
    line = serve_hook()
    # then
    assert line == "Telegram bot: webhook registered at http://testserver/telegram/webhook"
    assert bot.webhook["secret_token"] == webhook_secret(TOKEN) and TOKEN not in line


def test_set_stars_enables_the_stars_gateway_with_the_bots_token(bot_api):
    # given
    from kami.payments.registry import gateway_get

    kami("telegram", "set", f"token={TOKEN}", "poll")
    # when
    output = kami("telegram", "set", "stars=7")
    # then
    assert "Stars: 7 per unit" in output and TOKEN not in output
    assert gateway_get("stars").secrets["bot_token"] == TOKEN
    # when: the merchant stops it
    kami("telegram", "set", "stars=")
    # then
    assert "Stars: off" in kami("telegram", "status")
