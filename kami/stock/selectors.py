"""Reading stock: the one place that counts keys per product and status for people to read."""
from __future__ import annotations

from dataclasses import dataclass

from django.db.models import Count, Q

from kami.catalog.models import Product
from kami.stock.models import Key

# Order rows are reached through Product's `orders` related name, so stock never imports orders.
AWAITING_STOCK = "awaiting_stock"


@dataclass(frozen=True)
class StockRow:
    product: Product
    available: int
    sold: int
    void: int
    awaiting: int  # paid orders waiting for keys

    @property
    def low(self) -> bool:
        return bool(self.product.low_stock) and self.available < self.product.low_stock


def stock_summary() -> list[StockRow]:
    """Every product with its key counts and awaiting-stock orders, in catalogue order.

    Keys are counted in one grouped query (served by the (product, status, id) index) and orders
    in another: joining both in one query would multiply keys by orders.
    """
    counts: dict[int, dict[str, int]] = {}
    grouped = Key.objects.order_by().values("product_id", "status").annotate(n=Count("id"))
    for row in grouped.values_list("product_id", "status", "n"):
        counts.setdefault(row[0], {})[row[1]] = row[2]
    products = Product.objects.annotate(awaiting=Count("orders", filter=Q(orders__status=AWAITING_STOCK)))
    return [
        StockRow(product=p, available=counts.get(p.pk, {}).get(Key.Status.AVAILABLE, 0),
                 sold=counts.get(p.pk, {}).get(Key.Status.SOLD, 0), void=counts.get(p.pk, {}).get(Key.Status.VOID, 0),
                 awaiting=p.awaiting)
        for p in products.order_by("sort_order", "id")
    ]


def awaiting_count(*, product: Product) -> int:
    """Paid orders of `product` still waiting for keys."""
    return product.orders.filter(status=AWAITING_STOCK).count()
