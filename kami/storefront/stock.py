"""What the buyer is told about stock: available or not, and a count only when it is low."""
from __future__ import annotations

from dataclasses import dataclass

from kami.catalog.models import Product
from kami.stock.claim import available_count

LOW_STOCK_SHOWN_BELOW = 10


@dataclass(frozen=True)
class StockState:
    available: bool
    left: int | None  # None: plenty (at or above the threshold), so no number is shown

    def as_json(self) -> dict:
        return {"available": self.available, "left": self.left}


def stock_state(*, product: Product) -> StockState:
    """One bounded count: at most max(low_stock, 10) keys are read, however big the stock.
    A `manual` product (a person delivers it) is always available and reads no keys."""
    if not product.needs_keys:
        return StockState(available=True, left=None)
    threshold = max(product.low_stock, LOW_STOCK_SHOWN_BELOW)
    count = available_count(product_id=product.pk, at_most=threshold)
    if product.kind == Product.Kind.REUSABLE:  # the same keys for everyone: never "only N left"
        return StockState(available=count > 0, left=None)
    return StockState(available=count > 0, left=count if count < threshold else None)
