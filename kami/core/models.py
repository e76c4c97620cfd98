"""The shop's own presentation, set by the merchant: one row, read on every buyer page through
`kami.shop.selectors.shop_settings_get` (cached) and written only by `kami.shop.services.shop_settings_update`."""
from __future__ import annotations

from django.db import models
from django.utils.translation import gettext_lazy as _
from django.db.models import Q

SINGLETON_ID = 1


class ShopSettings(models.Model):
    class NoticeFormat(models.TextChoices):
        TEXT = "text", _("Plain text")
        MARKDOWN = "markdown", _("Markdown (formatted)")

    id = models.PositiveSmallIntegerField(verbose_name=_("ID"), primary_key=True, default=SINGLETON_ID, editable=False)
    # "" means "not set": the name then comes from KAMI_SHOP_NAME.
    name = models.CharField(verbose_name=_("shop name"), max_length=80, blank=True, default="")
    # The logo's file name in `<data dir>/shop/` (content-addressed, always a PNG we re-encoded).
    logo = models.CharField(verbose_name=_("logo"), max_length=64, blank=True, default="")
    notice = models.TextField(verbose_name=_("notice"), blank=True, default="")
    notice_format = models.CharField(verbose_name=_("notice format"), max_length=8, choices=NoticeFormat.choices,
                                     default=NoticeFormat.TEXT)
    footer = models.CharField(verbose_name=_("footer"), max_length=500, blank=True, default="")
    updated_at = models.DateTimeField(verbose_name=_("updated at"), null=True, blank=True)
    updated_by = models.CharField(verbose_name=_("updated by"), max_length=150, blank=True, default="")

    class Meta:
        verbose_name = _("shop settings")
        verbose_name_plural = _("shop settings")
        constraints = [models.CheckConstraint(condition=Q(id=SINGLETON_ID), name="shop_settings_singleton")]

    def __str__(self) -> str:
        return self.name or "shop settings"
