"""The buyer's side of the bot: catalogue, product, quantity, the product's custom fields (asked one
by one), email (optional), gateway, payment link or QR, and /orders. Every order goes through checkout_start, the web's own path: same prices, coupons,
limits and stock rules. A chat's progress is kept in BotChat.state between messages."""
from __future__ import annotations

import io
import logging

import segno
from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.utils.translation import gettext

from kami.catalog.coupons import CouponRefused
from kami.catalog.custom_fields import custom_values_clean
from kami.catalog.models import Product
from kami.catalog.services import price_for
from kami.core.errors import BadInput, KamiError, SoldOut
from kami.delivery.channels.telegram import BotApiFailure
from kami.delivery.channels.telegram_chat import keys_texts
from kami.fulfilment.checkout import checkout_start
from kami.orders.models import Order
from kami.orders.selectors import order_keys_plaintext
from kami.orders.services import TOO_MANY_UNPAID
from kami.payments.registry import gateway_class, gateways_enabled
from kami.stock.selectors import available_count
from kami.telegram.api import Bot, keyboard
from kami.telegram.pictures import (CAPTION_MAX, photo_id_forget, photo_id_get, photo_id_keep, product_photo,
                                    units)
from kami.telegram.selectors import user_order, user_orders
from kami.telegram.services import chat_state_get, chat_state_set, order_owner
from kami.telegram.stars import GATEWAY as STARS, invoice_send

log = logging.getLogger("kami.telegram")


def catalogue(bot: Bot, chat_id: int) -> None:
    products = list(Product.objects.filter(active=True).order_by("sort_order", "id")[:50])
    if not products:
        bot.say(chat_id, gettext("Nothing is on sale right now."))
        return
    rows = [[(f"{p.name} · {price_for(product=p, quantity=p.min_qty).unit} {p.currency}", f"p:{p.pk}")]
            for p in products]
    bot.say(chat_id, gettext("Choose a product:"), keyboard=keyboard(rows))


def product_show(bot: Bot, chat_id: int, product_id: str) -> None:
    """Name, price, stock, description and the quantity buttons; with the product's picture
    (sendPhoto, the text as its caption) when it has one."""
    product = _on_sale(product_id)
    if product is None:
        bot.say(chat_id, gettext("This product is not on sale any more."))
        return
    left = available_count(product_id=product.pk, at_most=product.max_qty) if product.needs_keys else None
    price = price_for(product=product, quantity=product.min_qty).unit
    head = [product.name, gettext("Price: %(price)s %(currency)s") % {"price": price, "currency": product.currency}]
    tail, buttons = [], None
    if left is not None and left < product.min_qty:
        head.append(gettext("Sold out."))
    else:
        head.append(gettext("In stock: %(left)s") % {"left": left} if left is not None and left < product.max_qty
                    else gettext("In stock"))
        top = product.max_qty if left is None else min(product.max_qty, left)
        choices = list(range(product.min_qty, min(top, product.min_qty + 4) + 1))
        tail = ["", gettext("How many?")]
        buttons = keyboard([[(str(n), f"q:{product.pk}:{n}") for n in choices]])
    _product_send(bot, chat_id, product, head, product.description[:1500], tail, buttons)


def _product_send(bot: Bot, chat_id: int, product: Product, head: list, description: str, tail: list,
                  buttons) -> None:
    """As a photo when the product has a picture (the description shortened to fit the caption),
    else as a message: by the file_id Telegram gave for an earlier upload, else uploaded (and its
    file_id kept). A photo Telegram refuses falls back to an upload, then to the message."""
    if product.picture_page:
        room = CAPTION_MAX - units(_product_text(head, "", tail)) - 4
        short = description if units(description) <= room else _cut(description, room)
        photo = {"chat_id": chat_id, "caption": _product_text(head, short, tail), "reply_markup": buttons}
        if _photo_sent(bot, product, photo):
            return
    bot.say(chat_id, _product_text(head, description, tail), keyboard=buttons)


def _photo_sent(bot: Bot, product: Product, photo: dict) -> bool:
    picture = product.picture_page
    known = photo_id_get(bot_id=bot.id, picture=picture)
    if known:
        try:
            bot.call("sendPhoto", photo=known, **photo)
            return True
        except BotApiFailure as exc:
            if not exc.status:  # no answer at all: an upload would not get through either
                raise
            log.info("telegram: the file_id of product %s's picture was refused (%s); uploading it", product.pk, exc)
            photo_id_forget(bot_id=bot.id, picture=picture)
    data = product_photo(product)
    if data is None:
        return False
    try:
        sent = bot.call("sendPhoto", files={"photo": ("product.jpg", data, "image/jpeg")}, **photo)
    except BotApiFailure as exc:
        if not exc.status:
            raise
        log.warning("telegram: the picture of product %s was refused (%s); sent as text", product.pk, exc)
        return False
    photo_id_keep(bot_id=bot.id, picture=picture, sent=sent)
    return True


def _product_text(head: list, description: str, tail: list) -> str:
    return "\n".join(head + (["", description] if description else []) + tail)


def _cut(text: str, room: int) -> str:
    """`text` shortened to `room` UTF-16 units, ending in an ellipsis."""
    while text and units(text) > max(room - 1, 0):
        text = text[:-max(1, (units(text) - room) // 2)]
    return text.rstrip() + "…" if text else ""


def quantity_chosen(bot: Bot, chat_id: int, user_id: int, product_id: str, quantity: str) -> None:
    product = _on_sale(product_id)
    if product is None or not quantity.isdigit():
        bot.say(chat_id, gettext("This product is not on sale any more."))
        return
    state = {"product": product.pk, "quantity": int(quantity), "coupon": chat_state_get(user_id=user_id).get("coupon", ""),
             "custom": {}}
    if product.custom_fields:
        state["asking"] = 0
        chat_state_set(user_id=user_id, state=state)
        _field_ask(bot, chat_id, product.custom_fields[0])
        return
    chat_state_set(user_id=user_id, state=state)
    _email_ask(bot, chat_id)


def _email_ask(bot: Bot, chat_id: int) -> None:
    bot.say(chat_id, gettext("Your keys arrive here in the chat. To get them by email too (the email also finds "
                             "your order on the website), send your email address; otherwise tap Skip."),
            keyboard=keyboard([[(gettext("Skip"), "e:skip")]]))


def email_skipped(bot: Bot, chat_id: int, user_id: int) -> None:
    """No email: the order is delivered in the chat only."""
    state = chat_state_get(user_id=user_id)
    if not state.get("product"):
        catalogue(bot, chat_id)
        return
    state["email"] = ""
    chat_state_set(user_id=user_id, state=state)
    _gateways_offer(bot, chat_id)


def coupon_given(bot: Bot, chat_id: int, user_id: int, code: str) -> None:
    state = chat_state_get(user_id=user_id)
    state["coupon"] = code.strip()[:64]
    chat_state_set(user_id=user_id, state=state)
    bot.say(chat_id, gettext("Coupon noted: it is checked when the order is made."))


def _field_ask(bot: Bot, chat_id: int, field: dict) -> None:
    """One custom field's question; an optional one has a Skip button. The label is the merchant's own."""
    text = gettext("Send %(label)s (one line, at most %(max)s characters).") % {
        "label": field["label"], "max": field["max_length"]}
    skip = None if field["required"] else keyboard([[(gettext("Skip"), "f:skip")]])
    bot.say(chat_id, text, keyboard=skip)


def field_answered(bot: Bot, chat_id: int, user_id: int, state: dict, answer: str | None) -> None:
    """The answer to the field being asked (None: Skip), checked by the web's own rule
    (custom_values_clean): a bad answer asks again; the last field leads to the email step."""
    product = _on_sale(str(state.get("product", "")))
    fields = product.custom_fields if product is not None else []
    index = state.get("asking")
    if not isinstance(index, int) or not 0 <= index < len(fields):
        catalogue(bot, chat_id)
        return
    field = fields[index]
    if answer is None and field["required"]:
        _field_ask(bot, chat_id, field)
        return
    if answer is not None:
        answers, errors = custom_values_clean(product=product, values={field["name"]: answer})
        problem = errors.get(f"custom_values.{field['name']}")
        if problem:
            bot.say(chat_id, problem)
            _field_ask(bot, chat_id, field)
            return
        state["custom"] = {**state.get("custom", {}), field["name"]: answers[field["name"]]}
    if index + 1 < len(fields):
        state["asking"] = index + 1
        chat_state_set(user_id=user_id, state=state)
        _field_ask(bot, chat_id, fields[index + 1])
        return
    state.pop("asking")
    chat_state_set(user_id=user_id, state=state)
    _email_ask(bot, chat_id)


def field_skipped(bot: Bot, chat_id: int, user_id: int) -> None:
    state = chat_state_get(user_id=user_id)
    if "asking" not in state:
        catalogue(bot, chat_id)
        return
    field_answered(bot, chat_id, user_id, state, None)


def text_received(bot: Bot, chat_id: int, user_id: int, text: str) -> None:
    """Free text answers the custom field being asked, or is the email at that step; otherwise
    the catalogue."""
    state = chat_state_get(user_id=user_id)
    if not state.get("product"):
        catalogue(bot, chat_id)
        return
    if "asking" in state:
        field_answered(bot, chat_id, user_id, state, text)
        return
    email = text.strip()
    try:
        validate_email(email)
    except ValidationError:
        bot.say(chat_id, gettext("That is not an email address. Send one like name@example.com."))
        return
    state["email"] = email[:254]
    chat_state_set(user_id=user_id, state=state)
    _gateways_offer(bot, chat_id)


def _gateways_offer(bot: Bot, chat_id: int) -> None:
    rows = [[(str(gateway_class(name).label), f"g:{name}")] for name in gateways_enabled()]
    if not rows:
        bot.say(chat_id, gettext("No payment method is available right now. Please try again later."))
        return
    bot.say(chat_id, gettext("Choose how to pay:"), keyboard=keyboard(rows))


def gateway_chosen(bot: Bot, chat_id: int, user_id: int, gateway: str, locale: str) -> None:
    state = chat_state_get(user_id=user_id)
    product = Product.objects.filter(pk=state.get("product")).first()
    if product is None or "email" not in state or "asking" in state:  # fields, then email (or Skip), come first
        catalogue(bot, chat_id)
        return
    try:
        checkout = checkout_start(product_slug=product.slug, quantity=state.get("quantity"), email=state["email"],
                                  gateway=gateway, locale=locale, coupon=state.get("coupon", ""),
                                  custom_values=state.get("custom") or None,
                                  owner=order_owner(user_id=user_id, chat_id=chat_id))
    except SoldOut:
        bot.say(chat_id, gettext("Sold out: not enough stock for this quantity."))
        return
    except BadInput as exc:
        bot.say(chat_id, _refusal(exc))
        return
    except KamiError:  # the gateway refused or was down: nothing to pay yet (logged by the gateway's caller)
        bot.say(chat_id, gettext("The payment could not be started. Please try again in a moment."))
        return
    chat_state_set(user_id=user_id, state={})
    if gateway == STARS:
        invoice_send(bot, chat_id, checkout.order)  # the invoice itself, inline in the chat
        return
    _pay(bot, chat_id, checkout)


def _pay(bot: Bot, chat_id: int, checkout) -> None:
    order, action = checkout.order, checkout.payment
    text = gettext("Order %(order_no)s: %(amount)s %(currency)s. Pay within %(minutes)s minutes; your keys "
                   "arrive here when the payment is confirmed.") % {
        "order_no": order.order_no, "amount": order.amount, "currency": order.currency,
        "minutes": settings.KAMI_ORDER_TTL_MINUTES}
    page = gettext("Order page: %(url)s") % {"url": checkout.order_url}
    if action.type == "qr" and action.qr:
        image = io.BytesIO()
        segno.make(action.qr, error="m").save(image, kind="png", scale=8, border=2)
        bot.call("sendPhoto", chat_id=chat_id, caption=f"{text}\n{gettext('Scan to pay.')}",
                 files={"photo": ("pay.png", image.getvalue(), "image/png")})
        bot.say(chat_id, page)
    elif action.type == "redirect" and action.url:
        bot.say(chat_id, f"{text}\n\n{gettext('Pay here: %(url)s') % {'url': action.url}}\n\n{page}")
    else:  # a form post: the order page carries it
        bot.say(chat_id, f"{text}\n\n{gettext('Pay on the order page: %(url)s') % {'url': checkout.order_url}}")


def orders_list(bot: Bot, chat_id: int, user_id: int) -> None:
    orders = list(user_orders(user_id=user_id))
    if not orders:
        bot.say(chat_id, gettext("You have no orders yet. /start shows the catalogue."))
        return
    lines = [gettext("Your orders:")]
    rows = []
    for order in orders:
        lines.append(f"{order.order_no} · {order.product.name} × {order.quantity} · {order.get_status_display()}")
        if order.status == Order.Status.FULFILLED:
            rows.append([(gettext("Keys of %(order_no)s") % {"order_no": order.order_no}, f"o:{order.order_no}")])
    bot.say(chat_id, "\n".join(lines), keyboard=keyboard(rows) if rows else None)


def order_keys_show(bot: Bot, chat_id: int, user_id: int, order_no: str) -> None:
    """The keys again, only to the Telegram user who made the order."""
    order = user_order(user_id=user_id, order_no=order_no)
    if order is None:
        bot.say(chat_id, gettext("No such order."))
        return
    if order.status != Order.Status.FULFILLED:
        bot.say(chat_id, f"{order.order_no} · {order.get_status_display()}")
        return
    for text in keys_texts(order, [k.reveal() for k in order_keys_plaintext(order=order)]):
        bot.call("sendMessage", chat_id=chat_id, text=text, parse_mode="HTML")


def _on_sale(product_id: str) -> Product | None:
    return Product.objects.filter(pk=int(product_id), active=True).first() if product_id.isdigit() else None


def _refusal(exc: BadInput) -> str:
    """A refused order, in the buyer's words: coupon refusals come translated; the others are mapped."""
    if isinstance(exc, CouponRefused):
        return str(exc)
    fields = exc.details.get("fields") or {}
    if TOO_MANY_UNPAID in (str(exc), *map(str, fields.values())):
        return gettext("Too many unpaid orders: pay or wait for them to expire.")
    if "quantity" in fields:
        return gettext("This quantity cannot be bought: choose the product again.")
    if "gateway" in fields:
        return gettext("This payment method is not available for this product.")
    if "email" in fields:
        return gettext("That is not an email address. Send one like name@example.com.")
    if any(name.startswith("custom_values") for name in fields):  # the product's fields changed meanwhile
        return gettext("This product now asks for other details: choose it again with /start.")
    return gettext("The order could not be made. Please start again with /start.")
