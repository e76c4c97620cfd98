"""The bot's calls to Telegram, through the one Bot API plumbing (kami.delivery.channels.telegram).
Keyboards are aiogram's types, serialised as the Bot API takes them. aiogram.types is imported
where a keyboard is built, never at start-up: its import costs seconds (it builds every pydantic
model of the Bot API), which every `kami` command and server process paid before."""
from __future__ import annotations

from typing import TYPE_CHECKING

from kami.delivery.channels.telegram import bot_call

if TYPE_CHECKING:
    from aiogram.types import InlineKeyboardMarkup


class Bot:
    def __init__(self, token: str):
        self._token = token

    def __repr__(self) -> str:  # never the token
        return "Bot(***)"

    @property
    def id(self) -> int:
        """The bot's user id: the token's part before the colon (not a secret)."""
        head = self._token.split(":", 1)[0]
        return int(head) if head.isdigit() else 0

    def call(self, method: str, *, files: dict | None = None, timeout: float = 10, **params) -> object:
        data = {k: (v.model_dump_json(exclude_none=True) if hasattr(v, "model_dump_json") else str(v))
                for k, v in params.items() if v is not None}
        return bot_call(token=self._token, method=method, data=data, files=files, timeout=timeout)

    def say(self, chat_id: int, text: str, *, keyboard: InlineKeyboardMarkup | None = None) -> None:
        self.call("sendMessage", chat_id=chat_id, text=text[:4096], reply_markup=keyboard,
                  disable_web_page_preview="true")


def keyboard(rows: list[list[tuple[str, str]]]) -> InlineKeyboardMarkup:
    """Buttons as (text, callback data) rows; callback data stays under Telegram's 64 bytes."""
    from aiogram.types import InlineKeyboardButton, InlineKeyboardMarkup

    return InlineKeyboardMarkup(inline_keyboard=[[InlineKeyboardButton(text=text[:64], callback_data=data[:64])
                                                  for text, data in row] for row in rows])
