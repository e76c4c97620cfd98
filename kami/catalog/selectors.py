from __future__ import annotations

from kami.catalog.models import Product
from kami.core.errors import NotFound


def product_get(*, slug: str) -> Product:
    try:
        return Product.objects.get(slug=slug)
    except Product.DoesNotExist:
        raise NotFound(f"no product {slug!r}; `kami product list` shows the slugs") from None
