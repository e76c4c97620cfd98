"""Template helpers for every page that shows the buyer money or the merchant's notice.

`{{ amount|money:currency }}` formats an amount for the language being rendered (the page's, or
the order's in an email): zh-hans shows ¥48.00, en shows CN¥48.00, US$/$ for USD. A code that
is no ISO currency (USDT) is written after the number: 48.00 USDT.
"""
from __future__ import annotations

from django import template
from django.utils.safestring import SafeString

from kami.core.shop import Shop
from kami.core.templatetags.kami_money import money, money_format  # noqa: F401  (re-exported)
from kami.storefront.markup import notice_html

register = template.Library()
register.filter("money", money)


@register.filter
def shop_notice(shop: Shop) -> SafeString | str:
    """The merchant's notice: plain text (escaped, line breaks kept by CSS) or safe Markdown."""
    if not shop or not shop.notice:
        return ""
    return notice_html(shop.notice) if shop.notice_format == "markdown" else shop.notice
