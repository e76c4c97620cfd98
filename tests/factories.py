"""Factories for tests: stock and orders made the way the product makes them."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from django.db import connection

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


def make_orders_side_by_side(product, quantities, *, threads: int = 8, gateway="sandbox"):
    """make_orders for a sale of thousands on a server database: the same order_create, called
    from `threads` threads with their own connections. Each order is a few round trips and a
    commit, so one thread mostly waits on the database (2,500 orders took 40-90 s on this machine).
    Transactional tests only: the other connections must see the product. SQLite (one writer)
    makes them one by one. The orders come back in the order of `quantities`."""
    if connection.vendor == "sqlite":
        return make_orders(product, quantities, gateway=gateway)
    orders = [None] * len(quantities)

    def create(first: int) -> None:
        try:
            for i in range(first, len(quantities), threads):
                orders[i] = order_create(product=product, quantity=quantities[i], email=f"buyer{i}@example.com",
                                         gateway=gateway)[0]
        finally:
            connection.close()  # this thread's own connection

    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(create, range(threads)))  # re-raises the first error
    return orders
