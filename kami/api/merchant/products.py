"""GET /merchant/products, /merchant/products/{slug} (scope `read`); POST /merchant/products and
PATCH /merchant/products/{slug} (scope `products`), through the catalog's services: the same
rules (a kind is fixed once sold) and audit rows as the back office."""
from __future__ import annotations

from decimal import Decimal

from ninja import Header, Router

from kami.api.merchant.auth import PRODUCTS, READ
from kami.api.merchant.idempotency import HEADER_RULES, idempotent
from kami.api.merchant.problems import Problem
from kami.api.merchant.schemas import (READ_ERRORS, WRITE_ERRORS, ProductIn, ProductOut, ProductPatch, errors,
                                       slug_path)
from kami.api.merchant.selectors import products_list
from kami.catalog.models import Product
from kami.catalog.selectors import product_get
from kami.catalog.services import product_change, product_create
from kami.core.net import client_ip

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


@router.post("", auth=PRODUCTS, response={201: ProductOut, **WRITE_ERRORS},
             summary="Create a product (add keys to it through the stock endpoints)")
def product_add(request, payload: ProductIn, *,
                idempotency_key: str = Header(..., alias="Idempotency-Key", **HEADER_RULES)):
    def run():
        values = payload.dict()
        _quantities_check(values["min_qty"], values["max_qty"])
        made = product_create(**{**values, "price": Decimal(values["price"])}, actor=request.auth.actor,
                              ip=client_ip(request) or "")
        return 201, product_out(made)

    return idempotent(request, key=idempotency_key, run=run)


@router.patch("/{slug}", auth=PRODUCTS, response={200: ProductOut, **WRITE_ERRORS},
              summary="Change a product: only the fields sent (price, thresholds, active…)")
def product_edit(request, payload: ProductPatch, slug: str = slug_path()):
    changes = payload.dict(exclude_unset=True)
    if "price" in changes:
        changes["price"] = Decimal(changes["price"])
    changed = product_change(slug=slug, changes=changes, actor=request.auth.actor, ip=client_ip(request) or "")
    return product_out(changed)


def _quantities_check(min_qty: int, max_qty: int) -> None:
    if max_qty < min_qty:
        raise Problem(422, "invalid", f"max_qty {max_qty} is below min_qty {min_qty}: a buyer could order nothing; "
                                      "send max_qty >= min_qty", errors=[{"location": "body.payload.max_qty",
                                                                          "message": "must be >= min_qty"}])
