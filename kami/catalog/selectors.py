from __future__ import annotations

from django.db.models import QuerySet

from kami.catalog.coupons import coupon_code_normalise
from kami.catalog.models import Coupon, Product
from kami.core.errors import NotFound


def product_get(*, slug: str) -> Product:
    try:
        return Product.objects.get(slug=slug)
    except Product.DoesNotExist:
        raise NotFound(f"no product {slug!r}; `kami product list` shows the slugs") from None


def coupons_list(*, active: bool | None = None) -> QuerySet[Coupon]:
    """Coupons, newest first, with their products prefetched; `active` filters when given."""
    coupons = Coupon.objects.prefetch_related("products").order_by("-created_at", "-id")
    return coupons if active is None else coupons.filter(active=active)


def coupon_get(*, code: str) -> Coupon:
    coupon = Coupon.objects.prefetch_related("products").filter(code=coupon_code_normalise(code)).first()
    if coupon is None:
        raise NotFound(f"no coupon {code!r}")
    return coupon
