"""GET /merchant/products, /merchant/products/{slug} (scope `read`)."""
from __future__ import annotations

from ninja import Router

from kami.api.merchant.auth import READ
from kami.api.merchant.schemas import READ_ERRORS, ProductOut, errors, slug_path
from kami.api.merchant.selectors import products_list
from kami.catalog.models import Product
from kami.catalog.selectors import product_get

router = Router(tags=["products"])


def product_out(product: Product) -> dict:
    return {"slug": product.slug, "name": product.name, "kind": product.kind, "price": str(product.price),
            "currency": product.currency, "min_qty": product.min_qty, "max_qty": product.max_qty,
            "low_stock": product.low_stock, "active": product.active}


@router.get("", auth=READ, response={200: list[ProductOut], **READ_ERRORS}, summary="List products")
def products(request):
    return [product_out(p) for p in products_list()]


@router.get("/{slug}", auth=READ, response={200: ProductOut, **READ_ERRORS, **errors(404)}, summary="Read a product")
def product(request, slug: str = slug_path()):
    return product_out(product_get(slug=slug))
