"""Checkout: create the order and ask the chosen gateway how the buyer pays."""
from __future__ import annotations

import logging
from dataclasses import dataclass

from django.conf import settings
from django.urls import reverse

from kami.catalog.coupons import CouponRefused, coupon_tries_spent, coupon_try_refused
from kami.catalog.models import Product
from kami.core.errors import BadInput
from kami.core.logcontext import log_order
from kami.orders.models import Order
from kami.orders.services import PendingOwner, order_create
from kami.payments.interface import OrderInfo, PaymentAction, Urls
from kami.payments.registry import gateway_get
from kami.payments.selectors import notify_url
from kami.core.errors import NotFound

log = logging.getLogger("kami.fulfilment.checkout")

@dataclass(frozen=True)
class Checkout:
    order: Order
    token: str
    payment: PaymentAction
    order_url: str


def order_url(order: Order, token: str) -> str:
    """The order page with its token: only for Kami's own pages and emails, never a third party."""
    return f"{settings.KAMI_BASE_URL}{reverse('order-page', args=[order.order_no])}?token={token}"


def return_url(order: Order) -> str:
    """Where a gateway sends the buyer back: no token, because gateways (and Epay aggregators'
    logs and cashier-page scripts) see it. The browser's signed recent-orders cookie opens it."""
    return f"{settings.KAMI_BASE_URL}{reverse('order-return', args=[order.order_no])}"


def order_info(order: Order) -> OrderInfo:
    return OrderInfo(order_no=order.order_no, amount=order.amount, currency=order.currency,
                     subject=order.product.name[:120], email=order.email, expires_at=order.expires_at,
                     gateway_ref=order.gateway_ref)


def checkout_start(*, product_slug: object, quantity: object, email: object, gateway: object,
                   buyer_ip: str | None = None, locale: str = "zh-hans", lookup_password: object = "",
                   coupon: object = "", custom_values: object = None, owner: PendingOwner | None = None) -> Checkout:
    product = Product.objects.filter(slug=product_slug).first() if isinstance(product_slug, str) else None
    try:
        gw = gateway_get(gateway) if isinstance(gateway, str) else None
    except NotFound:
        gw = None
    if gw is None:
        raise BadInput("invalid order", fields={"gateway": "this payment method is not available"})
    if product is not None and not gw.supports_currency(product.currency):
        raise BadInput("invalid order", fields={"gateway": f"this payment method does not take {product.currency}"})
    if coupon and (refusal := coupon_tries_spent(client=buyer_ip or "")):
        raise refusal  # too many codes refused from this address: this one is not looked at
    try:
        order, token = order_create(product=product, quantity=quantity, email=email, gateway=gateway,
                                    buyer_ip=buyer_ip, locale=locale, lookup_password=lookup_password,
                                    coupon=coupon, custom_values=custom_values, owner=owner)
    except CouponRefused:
        coupon_try_refused(client=buyer_ip or "")
        raise
    log_order(order.order_no)  # the gateway call below logs under it
    log.info("order %s created: %s × %d, paying by %s", order.order_no, product.slug if product else "-", order.quantity,
             order.gateway)
    url = order_url(order, token)
    action = gw.create_payment(order_info(order), Urls(notify=notify_url(gateway), ret=return_url(order)))
    if action.gateway_ref:
        order.gateway_ref = action.gateway_ref[:128]
        order.save(update_fields=["gateway_ref"])
    return Checkout(order=order, token=token, payment=action, order_url=url)
