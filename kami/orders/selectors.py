from __future__ import annotations

from kami.core.crypto import Secret, token_matches
from kami.core.errors import NotFound
from kami.orders.models import Order, OrderKey
from kami.stock.vault import key_open


def order_get_for_buyer(*, order_no: str, token: str) -> Order:
    """The order, if the token matches. An unknown order and a wrong token look the same."""
    order = Order.objects.select_related("product").filter(order_no=order_no).first() if order_no else None
    if order is None or not token or not token_matches(token, order.token_hash):
        raise NotFound("order not found")
    return order


def order_keys_plaintext(*, order: Order) -> list[Secret]:
    """The keys delivered to an order, decrypted. Keep the result in as few frames as possible."""
    rows = OrderKey.objects.filter(order=order).select_related("key").order_by("position", "id")
    return [key_open(key_id=r.key.key_id, ciphertext=r.key.ciphertext) for r in rows]
