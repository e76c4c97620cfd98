from __future__ import annotations

from decimal import Decimal

from kami.catalog.models import Product
from kami.core import money
from kami.core.errors import BadInput


def price_for(*, product: Product, quantity: int) -> tuple[Decimal, Decimal]:
    """(unit price, amount) for `quantity` of `product`. The one price function: every caller
    (API, storefront, back office) uses it, and the amount is never taken from the buyer."""
    unit = money.quantize(Decimal(product.price), product.currency)
    return unit, money.quantize(unit * quantity, product.currency)


def product_create(*, slug: str, name: str, price: Decimal, currency: str = "CNY", kind: str = "unique",
                   min_qty: int = 1, max_qty: int = 10, low_stock: int = 0, description: str = "") -> Product:
    if Product.objects.filter(slug=slug).exists():
        raise BadInput(f"product {slug!r} already exists; choose another slug")
    if kind not in Product.Kind.values:
        raise BadInput(f"--kind must be one of {', '.join(Product.Kind.values)}")
    if price < 0:
        raise BadInput("--price must not be negative")
    if min_qty < 1 or max_qty < min_qty:
        raise BadInput("quantities: need 1 <= --min-qty <= --max-qty")
    currency = money.parse_currency(currency)
    return Product.objects.create(
        slug=slug, name=name, price=money.quantize(price, currency), currency=currency, kind=kind,
        min_qty=min_qty, max_qty=max_qty, low_stock=low_stock, description=description,
    )
