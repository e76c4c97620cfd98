"""Telegram Stars in the bot: the invoice sent in the chat, the pre-checkout question answered
(within Telegram's 10 seconds, after checking the order, its price and the stock), and the
`successful_payment` update handed to the gateways' one notification path (stored raw, verified
by the stars module, confirmed once: the charge id is the trade number)."""
from __future__ import annotations

import json

from django.http import Http404, HttpRequest, HttpResponse
from django.utils.translation import gettext

from kami.catalog.models import Product
from kami.core import clock
from kami.core.edge import inbound_from, response_from
from kami.core.errors import NotFound
from kami.core.inbound import Inbound, Reply
from kami.fulfilment.checkout import order_info
from kami.fulfilment.notify import notification_handle
from kami.orders.models import Order
from kami.orders.services import payment_grace
from kami.payments.gateways.telegram_stars import SECRET_HEADER, stars_for, webhook_secret
from kami.payments.registry import gateway_get
from kami.stock.selectors import available_count
from kami.telegram.api import Bot

GATEWAY = "stars"


def is_payment(data: dict) -> bool:
    message = data.get("message")
    return isinstance(message, dict) and "successful_payment" in message


def payment_take(request: HttpRequest) -> HttpResponse:
    """A successful_payment update posted to the webhook, as a notification of the stars gateway."""
    try:
        return response_from(notification_handle(gateway_name=GATEWAY, inbound=inbound_from(request)))
    except NotFound:
        raise Http404("the stars gateway is not enabled") from None


def payment_take_polled(data: dict, *, token: str) -> Reply:
    """The same for an update fetched by long polling: what Telegram would have posted, as plain
    values. NotFound when the stars gateway is not enabled."""
    inbound = Inbound(method="POST", body=json.dumps(data).encode(), remote_addr="127.0.0.1",
                      headers={"Content-Type": "application/json", SECRET_HEADER: webhook_secret(token)})
    return notification_handle(gateway_name=GATEWAY, inbound=inbound)


def invoice_send(bot: Bot, chat_id: int, order: Order) -> None:
    gateway = gateway_get(GATEWAY)
    bot.call("sendInvoice", chat_id=chat_id, **gateway.invoice(order_info(order)))


def pre_checkout(bot: Bot, query) -> None:
    """Yes only for a pending, unexpired order, at its price in Stars, with the stock to fill it."""
    problem = _problem(query.invoice_payload, query.currency, query.total_amount)
    if problem:
        bot.call("answerPreCheckoutQuery", pre_checkout_query_id=query.id, ok="false", error_message=problem)
    else:
        bot.call("answerPreCheckoutQuery", pre_checkout_query_id=query.id, ok="true")


def _problem(payload: str, currency: str, total: int) -> str:
    order_no = payload.split("|", 1)[0]
    order = Order.objects.select_related("product").filter(order_no=order_no[:32]).first()
    if order is None or order.status != Order.Status.PENDING or clock.now() > order.expires_at + payment_grace():
        return gettext("This order cannot be paid any more: order again with /start.")
    try:
        rate = gateway_get(GATEWAY).rate()
    except NotFound:
        return gettext("Paying with Stars is not available right now.")
    if currency != "XTR" or total != stars_for(order.amount, rate):
        return gettext("The price has changed: order again with /start.")
    needed = 1 if order.product.kind == Product.Kind.REUSABLE else order.quantity
    if order.product.needs_keys and available_count(product_id=order.product_id, at_most=needed) < needed:
        return gettext("Sold out: not enough stock for this quantity.")
    return ""
