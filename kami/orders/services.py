"""Orders: creation, events and state transitions. Every status change goes through here."""
from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.contrib.auth.hashers import make_password
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import IntegrityError, transaction
from django.db.models import QuerySet
from django.utils.translation import gettext

from kami.catalog.custom_fields import custom_values_clean
from kami.catalog.models import Product
from kami.catalog.services import price_for
from kami.core import clock
from kami.core.crypto import token_hash
from kami.core.errors import BadInput, SoldOut
from kami.core.locks import named_locks
from kami.orders.models import Order, OrderEvent, email_normalise
from kami.orders.selectors import LOOKUP_PASSWORD_MAX, LOOKUP_PASSWORD_MIN, lookup_password_fits
from kami.stock.selectors import available_count


def order_event(*, order: Order, kind: str, **detail) -> OrderEvent:
    return OrderEvent.objects.create(order=order, at=clock.now(), kind=kind, detail=detail)


def order_no_new() -> str:
    return clock.now().strftime("%y%m%d%H%M") + f"{secrets.randbelow(10**8):08d}"


TOO_MANY_UNPAID = "too many unpaid orders: pay or wait for them to expire"


@dataclass(frozen=True)
class PendingOwner:
    """Who an order is made for besides its email, named by the edge that takes it (the Telegram
    bot: a Telegram user). Such an order may have no email (the edge delivers the keys its own
    way); the per-email limit counts the owner's unpaid orders as well, under the owner's lock,
    and `link` records the owner in the order's own transaction, so the next count sees it."""

    lock: str  # the named lock of this owner, e.g. "pending-telegram:555"
    mine: Callable[[QuerySet], QuerySet]  # pending orders -> this owner's pending orders
    link: Callable[[Order], None]


def order_validate(*, product: Product | None, quantity: object, email: object, lookup_password: object = "",
                   custom_values: object = None, email_optional: bool = False) -> dict:
    """Field errors for an order request, as {field: message}; empty when it is acceptable.
    The product's custom fields are checked too (custom_values_clean). `email_optional`: an
    empty email is accepted (an order with a PendingOwner); one that is given must be valid."""
    errors = {}
    if product is None or not product.active:
        errors["product"] = "no such product on sale"
    else:
        errors.update(custom_values_clean(product=product, values=custom_values)[1])
    if not isinstance(quantity, int) or isinstance(quantity, bool):
        errors["quantity"] = "quantity must be a whole number"
    elif product is not None and not (product.min_qty <= quantity <= product.max_qty):
        errors["quantity"] = f"quantity must be between {product.min_qty} and {product.max_qty}"
    try:
        if not isinstance(email, str) or len(email) > 254:
            raise ValidationError("bad")
        if not (email_optional and email == ""):
            validate_email(email)
    except ValidationError:
        errors["email"] = "a valid email address is required: your keys and order link are sent there"
    if lookup_password != "" and not lookup_password_fits(lookup_password):
        message = gettext("The order password must be %(min)s to %(max)s characters, or left empty.")
        errors["lookup_password"] = message % {"min": LOOKUP_PASSWORD_MIN, "max": LOOKUP_PASSWORD_MAX}
    return errors


def pending_limit_errors(*, email: str, buyer_ip: str | None, owner: PendingOwner | None = None) -> dict:
    """Anti-abuse: unpaid, unexpired orders per email and per buyer IP, counted in the database;
    0 turns a limit off. order_create counts again under `pending_locks`, so two requests at once
    cannot both take the last place."""
    pending = Order.objects.filter(status=Order.Status.PENDING, expires_at__gt=clock.now())
    errors = {}
    limit = settings.KAMI_PENDING_LIMIT_EMAIL
    if limit and email and pending.filter(email_norm=email_normalise(email)).count() >= limit:
        errors["email"] = TOO_MANY_UNPAID
    if limit and owner is not None and owner.mine(pending).count() >= limit:
        errors["owner"] = TOO_MANY_UNPAID
    limit = settings.KAMI_PENDING_LIMIT_IP
    if limit and buyer_ip and pending.filter(buyer_ip=buyer_ip).count() >= limit:
        errors["ip"] = TOO_MANY_UNPAID
    return errors


def pending_locks(*, email: str, buyer_ip: str | None, owner: PendingOwner | None = None) -> tuple[str, ...]:
    """The named locks that serialise order creation per email, owner and IP (kami.core.locks)."""
    names = [f"pending-email:{email_normalise(email)}"] if settings.KAMI_PENDING_LIMIT_EMAIL and email else []
    if settings.KAMI_PENDING_LIMIT_EMAIL and owner is not None:
        names.append(owner.lock)
    if settings.KAMI_PENDING_LIMIT_IP and buyer_ip:
        names.append(f"pending-ip:{buyer_ip}")
    return tuple(names)


def order_create(*, product: Product, quantity: int, email: str, gateway: str, buyer_ip: str | None = None,
                 locale: str = "zh-hans", lookup_password: str = "", coupon: str = "",
                 custom_values: dict | None = None, owner: PendingOwner | None = None) -> tuple[Order, str]:
    """Create a pending order; return it with its secret token (shown once, stored hashed).

    The stock check here is advisory ("sold out" before the buyer pays); unpaid orders hold no
    stock, and the claim at payment is the authority (DESIGN.md §2). A `manual` product needs no
    keys and is always in stock. A coupon is checked by price_for (refused, nothing is created);
    its use is counted when the order is paid (fulfilment/coupon_uses.py), so an unpaid order
    holds none. An `owner` (PendingOwner) makes the email optional and is linked in the transaction.
    """
    errors = order_validate(product=product, quantity=quantity, email=email, lookup_password=lookup_password,
                            custom_values=custom_values, email_optional=owner is not None)
    if errors:
        raise BadInput("invalid order", fields=errors)
    errors = pending_limit_errors(email=email, buyer_ip=buyer_ip, owner=owner)
    if errors:
        raise BadInput(TOO_MANY_UNPAID, fields=errors)
    needed = 1 if product.kind == Product.Kind.REUSABLE else quantity
    if product.needs_keys and available_count(product_id=product.pk, at_most=needed) < needed:
        raise SoldOut(f"{product.name}: not enough stock for {quantity}")
    coupon = coupon.strip() if isinstance(coupon, str) else coupon
    price = price_for(product=product, quantity=quantity, coupon=coupon or None)
    answers = custom_values_clean(product=product, values=custom_values)[0]
    token = secrets.token_urlsafe(24)
    lookup_hash = make_password(lookup_password) if lookup_password else ""  # slow: outside the transaction
    now = clock.now()
    for _ in range(5):
        try:
            with named_locks(*pending_locks(email=email, buyer_ip=buyer_ip, owner=owner)), \
                    transaction.atomic():  # the order, its first event and its owner's link, under the pending-limit locks
                errors = pending_limit_errors(email=email, buyer_ip=buyer_ip, owner=owner)  # again, now ours to decide
                if errors:
                    raise BadInput(TOO_MANY_UNPAID, fields=errors)
                order = order_unsaved(product=product, quantity=quantity, email=email, gateway=gateway, price=price,
                                      token=token, now=now, lookup_hash=lookup_hash, locale=locale, buyer_ip=buyer_ip,
                                      custom_values=answers)
                order.save(force_insert=True)
                order_event(order=order, kind="created", **order_created_detail(gateway=gateway, price=price))
                if owner is not None:
                    owner.link(order)
            return order, token
        except IntegrityError:
            continue  # order number collision: draw another
    raise RuntimeError("could not allocate an order number")


def order_unsaved(*, product: Product, quantity: int, email: str, gateway: str, price, token: str, now,
                  lookup_hash: str = "", locale: str = "zh-hans", buyer_ip: str | None = None,
                  custom_values: dict | None = None) -> Order:
    """The pending order row order_create writes, checked and priced already (`price`: price_for's),
    unsaved. Also how tests make thousands at once (tests/factories.make_orders_at_once)."""
    return Order(order_no=order_no_new(), product=product, email=email.strip(), email_norm=email_normalise(email),
                 quantity=quantity, unit_price=price.unit, amount=price.amount, currency=product.currency,
                 gateway=gateway, token_hash=token_hash(token), lookup_hash=lookup_hash, locale=locale,
                 buyer_ip=buyer_ip, created_at=now, expires_at=now + timedelta(minutes=settings.KAMI_ORDER_TTL_MINUTES),
                 coupon=price.coupon, discount=price.discount, custom_values=custom_values or {})


def order_created_detail(*, gateway: str, price) -> dict:
    """The "created" event's detail."""
    return {"gateway": gateway, "amount": str(price.amount),
            **({"coupon": price.coupon.code, "discount": str(price.discount)} if price.coupon else {})}


def payment_grace() -> timedelta:
    return timedelta(seconds=settings.KAMI_PAYMENT_GRACE_SECONDS)


def orders_expire() -> list[int]:
    """Expire unpaid orders past their expiry (plus the grace for late notifications); return
    the ids of the orders this call expired. A coupon is not touched: unpaid orders hold no use."""
    cutoff = clock.now() - payment_grace()
    expired = []
    due = Order.objects.filter(status=Order.Status.PENDING, expires_at__lt=cutoff).values_list("id", flat=True)[:1000]
    for order_id in due:
        with transaction.atomic():  # conditional: a payment confirmed meanwhile wins; the event with it
            if Order.objects.filter(id=order_id, status=Order.Status.PENDING).update(status=Order.Status.EXPIRED):
                order_event(order=Order(id=order_id), kind="expired")
                expired.append(order_id)
    return expired
