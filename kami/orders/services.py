"""Orders: creation, events and state transitions. Every status change goes through here."""
from __future__ import annotations

import secrets
from datetime import timedelta

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import IntegrityError, transaction

from kami.catalog.models import Product
from kami.catalog.services import price_for
from kami.core import clock
from kami.core.crypto import token_hash
from kami.core.errors import BadInput, SoldOut
from kami.orders.models import Order, OrderEvent
from kami.stock.claim import available_count


def order_event(*, order: Order, kind: str, **detail) -> OrderEvent:
    return OrderEvent.objects.create(order=order, at=clock.now(), kind=kind, detail=detail)


def _new_order_no() -> str:
    return clock.now().strftime("%y%m%d%H%M") + f"{secrets.randbelow(10**8):08d}"


def order_validate(*, product: Product | None, quantity: object, email: object) -> dict:
    """Field errors for an order request, as {field: message}; empty when it is acceptable."""
    errors = {}
    if product is None or not product.active:
        errors["product"] = "no such product on sale"
    if not isinstance(quantity, int) or isinstance(quantity, bool):
        errors["quantity"] = "quantity must be a whole number"
    elif product is not None and not (product.min_qty <= quantity <= product.max_qty):
        errors["quantity"] = f"quantity must be between {product.min_qty} and {product.max_qty}"
    try:
        if not isinstance(email, str) or len(email) > 254:
            raise ValidationError("bad")
        validate_email(email)
    except ValidationError:
        errors["email"] = "a valid email address is required: your keys and order link are sent there"
    return errors


def order_create(*, product: Product, quantity: int, email: str, gateway: str, buyer_ip: str | None = None,
                 locale: str = "zh-hans") -> tuple[Order, str]:
    """Create a pending order; return it with its secret token (shown once, stored hashed).

    The stock check here is advisory ("sold out" before the buyer pays); unpaid orders hold no
    stock, and the claim at payment is the authority (DESIGN.md §2).
    """
    errors = order_validate(product=product, quantity=quantity, email=email)
    if errors:
        raise BadInput("invalid order", fields=errors)
    needed = 1 if product.kind == Product.Kind.REUSABLE else quantity
    if available_count(product_id=product.pk, at_most=needed) < needed:
        raise SoldOut(f"{product.name}: not enough stock for {quantity}")
    unit, amount = price_for(product=product, quantity=quantity)
    token = secrets.token_urlsafe(24)
    now = clock.now()
    for _ in range(5):
        try:
            with transaction.atomic():  # order and its first event together
                order = Order.objects.create(
                    order_no=_new_order_no(), product=product, email=email.strip(), quantity=quantity,
                    unit_price=unit, amount=amount, currency=product.currency, gateway=gateway,
                    token_hash=token_hash(token), locale=locale, buyer_ip=buyer_ip, created_at=now,
                    expires_at=now + timedelta(minutes=settings.KAMI_ORDER_TTL_MINUTES),
                )
                order_event(order=order, kind="created", gateway=gateway, amount=str(amount))
            return order, token
        except IntegrityError:
            continue  # order number collision: draw another
    raise RuntimeError("could not allocate an order number")


def payment_grace() -> timedelta:
    return timedelta(seconds=getattr(settings, "KAMI_PAYMENT_GRACE_SECONDS", 300))


def orders_expire() -> list[int]:
    """Expire unpaid orders past their expiry (plus the grace for late notifications); return
    the ids of the orders this call expired."""
    cutoff = clock.now() - payment_grace()
    expired = []
    for order_id in Order.objects.filter(status=Order.Status.PENDING, expires_at__lt=cutoff).values_list("id", flat=True)[:1000]:
        with transaction.atomic():  # conditional: a payment confirmed meanwhile wins
            if Order.objects.filter(id=order_id, status=Order.Status.PENDING).update(status=Order.Status.EXPIRED):
                order_event(order=Order(id=order_id), kind="expired")
                expired.append(order_id)
    return expired
