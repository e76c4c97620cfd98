"""Factories for tests: stock and orders made the way the product makes them."""
from __future__ import annotations

from kami.orders.services import order_create
from kami.stock.models import Key
from kami.stock.vault import key_seal


def add_keys(product, texts) -> list[Key]:
    rows, reusable = [], product.kind == "reusable"  # what the importer records
    for text in texts:
        key_id, blob, fp = key_seal(text, product_id=product.pk)
        rows.append(Key(product=product, key_id=key_id, ciphertext=blob, fingerprint=fp, reusable=reusable))
    return Key.objects.bulk_create(rows, batch_size=1000)


def make_orders(product, quantities, gateway="sandbox"):
    """Pending orders straight from the service (the API adds nothing these tests look at)."""
    return [order_create(product=product, quantity=q, email=f"buyer{i}@example.com", gateway=gateway)[0]
            for i, q in enumerate(quantities)]
