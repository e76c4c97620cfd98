"""Reads the merchant API needs that no domain selector offers yet. Plain reads, no writes: they
belong in kami/orders/selectors.py and kami/catalog/selectors.py once those files are free."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.db.models import Q, QuerySet

from kami.catalog.models import Product
from kami.core.errors import BadInput, NotFound
from kami.orders.models import Order, OrderEvent, OrderKey, email_normalise
from kami.payments.models import Payment

ORDER_PAGE_MAX = 200


def products_list() -> QuerySet[Product]:
    return Product.objects.order_by("sort_order", "id")


def orders_search(*, status: str = "", email: str = "", product: str = "", trade_no: str = "",
                  created_after: datetime | None = None, created_before: datetime | None = None,
                  before: str = "", limit: int = 50) -> list[Order]:
    """Orders newest first, filtered by every criterion given; `before` (an order number) pages."""
    orders = Order.objects.select_related("product").order_by("-id")
    if status:
        if status not in Order.Status.values:
            raise BadInput(f"status {status!r}: choose one of {', '.join(Order.Status.values)}")
        orders = orders.filter(status=status)
    if email:
        orders = orders.filter(email_norm=email_normalise(email))
    if product:
        orders = orders.filter(product__slug=product)
    if trade_no:
        # The trade a notification applied, or the gateway's own reference given at creation.
        orders = orders.filter(Q(gateway_ref=trade_no) | Q(id__in=Order.objects.filter(payments__trade_no=trade_no)
                                                           .values("id")))
    if created_after:
        orders = orders.filter(created_at__gte=created_after)
    if created_before:
        orders = orders.filter(created_at__lt=created_before)
    if before:
        cursor = Order.objects.filter(order_no=before).values_list("id", flat=True).first()
        if cursor is None:
            raise NotFound(f"before {before!r}: no such order; pass the `next_before` of the previous page")
        orders = orders.filter(id__lt=cursor)
    return list(orders[:max(1, min(limit, ORDER_PAGE_MAX))])


def order_get(*, order_no: str) -> Order:
    order = Order.objects.select_related("product").filter(order_no=order_no).first()
    if order is None:
        raise NotFound(f"no order {order_no!r}")
    return order


@dataclass(frozen=True)
class OrderDetail:
    order: Order
    payments: list[Payment]
    keys: list[OrderKey]  # with their Key: read only its id, fingerprint and status
    events: list[OrderEvent]


def order_detail_get(*, order_no: str) -> OrderDetail:
    order = order_get(order_no=order_no)
    return OrderDetail(order=order, payments=list(order.payments.order_by("id")),
                       keys=list(OrderKey.objects.filter(order=order).select_related("key").order_by("position", "id")),
                       events=list(order.events.order_by("at", "id")))
