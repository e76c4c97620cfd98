"""Template helpers of the storefront's pages: `money` (kami.core.templatetags.kami_money, the one
way an amount is written, registered here too so pages load one library), the merchant's notice,
a product's description and a gateway's display name.
"""
from __future__ import annotations

from django import template
from django.utils.safestring import SafeString

from kami.shop.selectors import Shop
from kami.core.templatetags.kami_money import money
from kami.payments.registry import GATEWAYS
from kami.storefront.markup import description_html, notice_html

register = template.Library()
register.filter("money", money)
# Drawn in the template, not the view: a cached product page skips the Markdown altogether.
register.filter("description_html", description_html)


@register.filter
def shop_notice(shop: Shop) -> SafeString | str:
    """The merchant's notice: plain text (escaped, line breaks kept by CSS) or safe Markdown."""
    if not shop or not shop.notice:
        return ""
    return notice_html(shop.notice) if shop.notice_format == "markdown" else shop.notice


@register.filter
def gateway_label(name: str):
    """What the buyer sees for a gateway (its translated `label`), never the internal name."""
    gateway = GATEWAYS.get(name)
    return gateway.label if gateway else name
