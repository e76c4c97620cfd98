from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class TelegramConfig(AppConfig):
    name = "kami.telegram"
    label = "telegram"
    verbose_name = _("Telegram bot")

    def ready(self) -> None:
        """The two ties to the delivery layer, made from here so it never imports an edge: the
        buyer's chat as a place an order's keys go, and the chat channel with this bot's token.
        And the stored bot token, sealed with the data key, for the data-key rotation to move."""
        from kami.core.crypto import SealedRows, sealed_rows_register
        from kami.delivery.channels import channel_register
        from kami.delivery.channels.telegram_chat import TelegramChatChannel
        from kami.delivery.services import order_keys_recipients_register
        from kami.telegram.config import bot_token
        from kami.telegram.selectors import order_chat_recipients
        from kami.telegram.services import bot_token_key_ids, bot_token_reseal

        order_keys_recipients_register(order_chat_recipients)
        channel_register(TelegramChatChannel(token_source=bot_token))
        sealed_rows_register(SealedRows("telegram bot token", key_ids=bot_token_key_ids, move=bot_token_reseal))
