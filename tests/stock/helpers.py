"""Factories for stock tests: files of keys, stored plaintexts, awaiting-stock orders."""
from __future__ import annotations

import io
from datetime import timedelta
from decimal import Decimal

from kami.core import clock
from kami.orders.models import Order
from kami.stock.models import Key
from kami.stock.services import keys_import
from kami.stock.vault import key_open


def import_bytes(product, data: bytes, **options):
    options.setdefault("source", "test")
    return keys_import(product=product, stream=io.BytesIO(data), **options)


def import_lines(product, lines: list[str], **options):
    return import_bytes(product, "".join(f"{line}\n" for line in lines).encode("utf-8"), **options)


def stored_keys(product, status: str | None = None) -> list[str]:
    """Plaintexts of the product's keys in id order (decrypted: tests only)."""
    keys = Key.objects.filter(product=product).order_by("id")
    if status:
        keys = keys.filter(status=status)
    return [key_open(k).reveal() for k in keys]


def awaiting_order(product, *, quantity: int = 1, paid_minutes_ago: int = 10, order_no: str | None = None) -> Order:
    """A paid order parked for lack of stock, as confirm leaves it."""
    now = clock.now()
    unit = Decimal(product.price)
    return Order.objects.create(
        order_no=order_no or f"T{Order.objects.count() + 1:08d}", product=product, email="buyer@example.com",
        quantity=quantity, unit_price=unit, amount=unit * quantity, currency=product.currency,
        status=Order.Status.AWAITING_STOCK, gateway="sandbox", token_hash="0" * 64, created_at=now - timedelta(hours=1),
        expires_at=now + timedelta(minutes=30), paid_at=now - timedelta(minutes=paid_minutes_ago))
