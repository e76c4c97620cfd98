"""One Telegram update in, the bot's answers out: the webhook view and the long-poll runner both
call `update_handle`. Updates are parsed with aiogram's types; each update id is handled once
(Telegram redelivers when a webhook answer is late). Handlers run outside any transaction of
their own: each service they call keeps its own, and Bot API calls happen between them."""
from __future__ import annotations

import logging

from aiogram.types import CallbackQuery, Message, Update
from django.utils import translation
from django.utils.translation import gettext
from pydantic import ValidationError

from kami.delivery.channels.telegram import BotApiFailure
from kami.telegram import buyer, stars
from kami.telegram.api import Bot
from kami.telegram.config import admin_ids
from kami.telegram.merchant import COMMANDS, merchant_command
from kami.telegram.services import chat_state_set, update_first_seen

log = logging.getLogger("kami.telegram")


def language_of(code: str | None) -> str:
    return "zh-hans" if (code or "").lower().startswith("zh") else "en"


def update_handle(data: dict, *, token: str) -> None:
    """Handle one update. Never raises: a broken update or a failed answer is logged (without
    the token or any key) and the next update goes on."""
    try:
        update = Update.model_validate(data)
    except ValidationError:
        log.warning("telegram: an update that is not an Update was ignored")
        return
    if not update_first_seen(update_id=update.update_id):
        return
    bot = Bot(token)
    if update.pre_checkout_query is not None:
        _pre_checkout(bot, update)
        return
    user = (update.message or update.callback_query or _Nobody).from_user
    if user is None:
        return
    try:
        with translation.override(language_of(user.language_code)):
            if update.message is not None and update.message.text:
                _message(bot, update.message)
            elif update.callback_query is not None:
                _callback(bot, update.callback_query)
    except BotApiFailure as exc:
        log.warning("telegram: answering update %s failed: %s", update.update_id, exc)
    except Exception:  # noqa: BLE001 — one bad update must not stop the bot; the traceback is ours, not a key
        log.exception("telegram: update %s could not be handled", update.update_id)


def _pre_checkout(bot: Bot, update: Update) -> None:
    query = update.pre_checkout_query
    try:
        with translation.override(language_of(query.from_user.language_code)):
            stars.pre_checkout(bot, query)
    except BotApiFailure as exc:
        log.warning("telegram: answering pre-checkout query of update %s failed: %s", update.update_id, exc)


class _Nobody:
    from_user = None


def _message(bot: Bot, message: Message) -> None:
    chat, user, text = message.chat.id, message.from_user.id, message.text.strip()
    if not text.startswith("/"):
        buyer.text_received(bot, chat, user, text)
        return
    command, _, rest = text[1:].partition(" ")
    command = command.split("@", 1)[0].lower()
    if command in ("start", "shop"):
        chat_state_set(user_id=user, state={})
        buyer.catalogue(bot, chat)
    elif command == "orders":
        buyer.orders_list(bot, chat, user)
    elif command == "coupon" and rest.strip():
        buyer.coupon_given(bot, chat, user, rest)
    elif command in COMMANDS and user in admin_ids():
        merchant_command(bot, chat, command)
    else:
        bot.say(chat, gettext("/start shows the catalogue, /orders your orders, /coupon CODE applies a coupon."))


def _callback(bot: Bot, query: CallbackQuery) -> None:
    bot.call("answerCallbackQuery", callback_query_id=query.id)
    chat = query.message.chat.id if query.message is not None else query.from_user.id
    user, parts = query.from_user.id, (query.data or "").split(":")
    if parts[0] == "p" and len(parts) == 2:
        buyer.product_show(bot, chat, parts[1])
    elif parts[0] == "q" and len(parts) == 3:
        buyer.quantity_chosen(bot, chat, user, parts[1], parts[2])
    elif parts[0] == "f" and parts[1:] == ["skip"]:
        buyer.field_skipped(bot, chat, user)
    elif parts[0] == "e" and parts[1:] == ["skip"]:
        buyer.email_skipped(bot, chat, user)
    elif parts[0] == "g" and len(parts) == 2:
        buyer.gateway_chosen(bot, chat, user, parts[1], translation.get_language())
    elif parts[0] == "o" and len(parts) == 2:
        buyer.order_keys_show(bot, chat, user, parts[1])
    else:
        buyer.catalogue(bot, chat)
