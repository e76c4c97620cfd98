from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class WebhooksConfig(AppConfig):
    name = "kami.webhooks"
    label = "webhooks"
    verbose_name = _("Webhooks")

    def ready(self) -> None:
        """The ties to the delivery layer, made from here so delivery never imports this app: the
        channel that sends, the events emitted where orders are fulfilled and where the merchant
        is alerted, and what happens when a message runs out of attempts. And the endpoints'
        secrets, sealed with the data key, for the data-key rotation to move."""
        from kami.core.crypto import SealedRows, sealed_rows_register
        from kami.delivery.channels import channel_register
        from kami.delivery.services import (
            admin_alert_listeners_register,
            delivery_escalation_register,
            order_fulfilled_listeners_register,
        )
        from kami.webhooks.channel import MerchantWebhookChannel
        from kami.webhooks.events import on_admin_alert, on_order_fulfilled
        from kami.webhooks.failures import on_message_exhausted
        from kami.webhooks.services import secrets_key_ids, secrets_reseal

        channel_register(MerchantWebhookChannel())
        order_fulfilled_listeners_register(on_order_fulfilled)
        admin_alert_listeners_register(on_admin_alert)
        delivery_escalation_register("webhook_event", on_message_exhausted)
        sealed_rows_register(SealedRows("webhook endpoint secrets", key_ids=secrets_key_ids, move=secrets_reseal))
