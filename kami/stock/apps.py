from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class StockConfig(AppConfig):
    name = "kami.stock"
    label = "stock"
    verbose_name = _("Stock")

    def ready(self) -> None:
        """Queued uploads are sealed with the data key: the rotation counts and moves them."""
        from kami.core.crypto import SealedRows, sealed_rows_register
        from kami.stock.jobfiles import chunks_key_ids, chunks_reseal

        sealed_rows_register(SealedRows("queued key-file uploads", key_ids=chunks_key_ids, move=chunks_reseal))
