"""Reading the shop settings: `shop_settings_get` serves them from the cache (one query a minute
per process at most; shared and cleared at once with KAMI_REDIS_URL), because every buyer page
reads them. Written only by kami.shop.services.shop_settings_update."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from django.core.cache import cache

from kami.core import datadir
from kami.core.models import SINGLETON_ID, ShopSettings

CACHE_KEY = "kami:shop-settings:v1"
CACHE_SECONDS = 60
LOGO_NAME_PATTERN = r"logo-[0-9a-f]{16}\.png"


@dataclass(frozen=True)
class Shop:
    name: str  # never empty: the merchant's name, else KAMI_SHOP_NAME
    logo: str  # file name under logo_dir(), "" when none
    notice: str
    notice_format: str  # "text" | "markdown"
    footer: str


def logo_dir() -> Path:
    return datadir.data_dir() / "shop"


def shop_settings_get() -> Shop:
    row = cache.get(CACHE_KEY)
    if row is None:
        found = ShopSettings.objects.filter(pk=SINGLETON_ID).values(
            "name", "logo", "notice", "notice_format", "footer").first()
        row = found or {"name": "", "logo": "", "notice": "", "notice_format": "text", "footer": ""}
        cache.set(CACHE_KEY, row, CACHE_SECONDS)
    # The default name is applied here, not cached: it follows the environment.
    return Shop(name=row["name"] or settings.KAMI_SHOP_NAME, logo=row["logo"], notice=row["notice"],
                notice_format=row["notice_format"], footer=row["footer"])
