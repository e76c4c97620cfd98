from django.apps import AppConfig


class FulfilmentConfig(AppConfig):
    name = "kami.fulfilment"
    label = "fulfilment"

    def ready(self) -> None:
        """Keys minted on demand (kami/fulfilment/mint), tied to the delivery layer from here so
        delivery never imports this one: the channel that calls the mint URL, what happens when it
        runs out of attempts, and the mint secrets, sealed with the data key, for the rotation."""
        from kami.core.crypto import SealedRows, sealed_rows_register
        from kami.delivery.channels import channel_register
        from kami.delivery.services import delivery_escalation_register
        from kami.fulfilment.mint.channel import MintChannel
        from kami.fulfilment.mint.config import mint_secret_key_ids, mint_secrets_reseal
        from kami.fulfilment.mint.service import KIND, on_mint_exhausted

        channel_register(MintChannel())
        delivery_escalation_register(KIND, on_mint_exhausted)
        sealed_rows_register(SealedRows("product mint secrets", key_ids=mint_secret_key_ids, move=mint_secrets_reseal))
