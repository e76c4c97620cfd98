"""The buyer's Telegram chat: an order's keys sent by the shop's bot (`sendMessage`) to the chat
the order was made from (kami.telegram). Same outbox, retries and escalation as email.

The token comes from `token_source` at send time (the bot app registers this channel with its
encrypted setting); it is never stored in the outbox and is scrubbed from errors by bot_call.
Telegram's 400 (chat not found) and 403 (the buyer blocked the bot) cannot be fixed by retrying:
they go to `manual` at once. Keys are scrubbed from every error text.
"""
from __future__ import annotations

from collections.abc import Callable
from html import escape

from django.utils import translation
from django.utils.translation import gettext

from kami.delivery.channels import PermanentFailure
from kami.delivery.channels.telegram import BotApiFailure, bot_call
from kami.delivery.models import OutboxMessage
from kami.orders.models import Order
from kami.orders.selectors import order_keys_plaintext

MAX_TEXT = 4096


class TelegramChatChannel:
    name = "telegram_chat"

    def __init__(self, *, token_source: Callable[[], str]):
        self.token_source = token_source

    def send(self, message: OutboxMessage) -> None:
        if message.kind != "order_keys":
            raise PermanentFailure(f"the telegram_chat channel carries order keys only, not {message.kind!r}")
        token = self.token_source()
        if not token:
            raise PermanentFailure("the Telegram bot has no token any more: `kami telegram set token=…`, then retry")
        order = Order.objects.select_related("product").filter(pk=(message.payload or {}).get("order_id")).first()
        if order is None:
            raise PermanentFailure(f"order id {(message.payload or {}).get('order_id')!r} does not exist")
        if order.status != Order.Status.FULFILLED:
            raise PermanentFailure(f"order {order.order_no} is {order.status}: its keys are not sent")
        keys = [k.reveal() for k in order_keys_plaintext(order=order)]
        for text in keys_texts(order, keys):
            try:
                bot_call(token=token, method="sendMessage",
                         data={"chat_id": message.target, "text": text, "parse_mode": "HTML"})
            except BotApiFailure as exc:
                error = _scrub(str(exc), keys)
                if exc.status in (400, 403):
                    raise PermanentFailure(error) from None
                raise BotApiFailure(error, status=exc.status) from None


def keys_texts(order: Order, keys: list[str]) -> list[str]:
    """The keys message in the order's language, split under Telegram's 4096 characters."""
    with translation.override(order.locale if order.locale in ("zh-hans", "en") else "zh-hans"):
        head = gettext("Order %(order_no)s: %(product)s × %(quantity)s. Your keys:") % {
            "order_no": order.order_no, "product": order.product.name, "quantity": order.quantity}
        tail = order.product.instructions or ""
    texts, current = [], escape(head)
    for key in keys:
        line = f"\n<code>{escape(key)}</code>"
        if len(current) + len(line) > MAX_TEXT:
            texts.append(current)
            current = ""
        current += line
    if tail and len(current) + len(tail) + 2 <= MAX_TEXT:
        current += "\n\n" + escape(tail)
    texts.append(current)
    return texts


def _scrub(text: str, keys: list[str]) -> str:
    for key in keys:
        if key:
            text = text.replace(key, "***")
    return text
