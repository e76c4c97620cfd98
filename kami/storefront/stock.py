"""What the buyer is told about stock: available or not, and a count only when it is low.

Counts stay bounded however big the stock: a product page reads at most max(low_stock, 10)
keys, and the home page asks once for all its badges (`stock_states`), not once per product."""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from kami.catalog.models import Product
from kami.stock.selectors import available_count, available_counts_capped

LOW_STOCK_SHOWN_BELOW = 10


@dataclass(frozen=True)
class StockState:
    available: bool
    left: int | None  # None: plenty (at or above the threshold), so no number is shown

    def as_json(self) -> dict:
        return {"available": self.available, "left": self.left}


ALWAYS = StockState(available=True, left=None)


def stock_state(*, product: Product) -> StockState:
    """One bounded count: at most max(low_stock, 10) keys are read, however big the stock.
    A `manual` product (a person delivers it) is always available and reads no keys."""
    if not product.needs_keys:
        return ALWAYS
    count = available_count(product_id=product.pk, at_most=_threshold(product))
    return _state(product, count)


def stock_states(*, products: Iterable[Product]) -> dict[int, StockState]:
    """Every product's state by id, in one query whatever the number of products
    (stock.selectors.available_counts_capped, cap: the largest threshold among them): each
    product reads at most cap index entries, as stock_state does."""
    products = list(products)
    counted = [p for p in products if p.needs_keys]
    states = {p.pk: ALWAYS for p in products if not p.needs_keys}
    if not counted:
        return states
    cap = max(_threshold(p) for p in counted)
    left = available_counts_capped(product_ids=[p.pk for p in counted], cap=cap)
    for p in counted:
        states[p.pk] = _state(p, left.get(p.pk, 0))
    return states


def _threshold(product: Product) -> int:
    return badge_threshold(low_stock=product.low_stock)


def badge_threshold(*, low_stock: int) -> int:
    """Below this many keys the badge shows the count: the product's own alert level, at least 10."""
    return max(low_stock, LOW_STOCK_SHOWN_BELOW)


def _state(product: Product, count: int) -> StockState:
    """`count`: the available keys, read up to at least the product's threshold."""
    if product.kind == Product.Kind.REUSABLE:  # the same keys for everyone: never "only N left"
        return StockState(available=count > 0, left=None)
    threshold = _threshold(product)
    return StockState(available=count > 0, left=count if count < threshold else None)
