"""Checkout: create the order and ask the chosen gateway how the buyer pays."""
from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings
from django.urls import reverse

from kami.catalog.models import Product
from kami.core.errors import BadInput
from kami.orders.models import Order
from kami.orders.services import order_create
from kami.payments.interface import OrderInfo, PaymentAction, Urls
from kami.payments.registry import gateway_get
from kami.core.errors import NotFound


@dataclass(frozen=True)
class Checkout:
    order: Order
    token: str
    payment: PaymentAction
    order_url: str


def order_url(order: Order, token: str) -> str:
    return f"{settings.KAMI_BASE_URL}{reverse('order-page', args=[order.order_no])}?token={token}"


def notify_url(gateway: str) -> str:
    return f"{settings.KAMI_BASE_URL}{reverse('pay-notify', args=[gateway])}"


def order_info(order: Order) -> OrderInfo:
    return OrderInfo(order_no=order.order_no, amount=order.amount, currency=order.currency,
                     subject=order.product.name[:120], email=order.email, expires_at=order.expires_at,
                     gateway_ref=order.gateway_ref)


def checkout_start(*, product_slug: object, quantity: object, email: object, gateway: object,
                   buyer_ip: str | None = None, locale: str = "zh-hans", lookup_password: object = "",
                   coupon: object = "", custom_values: object = None) -> Checkout:
    product = Product.objects.filter(slug=product_slug).first() if isinstance(product_slug, str) else None
    try:
        gw = gateway_get(gateway) if isinstance(gateway, str) else None
    except NotFound:
        gw = None
    if gw is None:
        raise BadInput("invalid order", fields={"gateway": "this payment method is not available"})
    if product is not None and not gw.supports_currency(product.currency):
        raise BadInput("invalid order", fields={"gateway": f"this payment method does not take {product.currency}"})
    order, token = order_create(product=product, quantity=quantity, email=email, gateway=gateway,
                                buyer_ip=buyer_ip, locale=locale, lookup_password=lookup_password,
                                coupon=coupon, custom_values=custom_values)
    url = order_url(order, token)
    action = gw.create_payment(order_info(order), Urls(notify=notify_url(gateway), ret=url))
    if action.gateway_ref:
        order.gateway_ref = action.gateway_ref[:128]
        order.save(update_fields=["gateway_ref"])
    return Checkout(order=order, token=token, payment=action, order_url=url)
