"""What every storefront page knows: the merchant's shop settings (name, logo, notice, footer)."""
from __future__ import annotations

from django.http import HttpRequest

from kami.shop.selectors import shop_settings_get


def shop(request: HttpRequest) -> dict:
    return {"shop": shop_settings_get()}
