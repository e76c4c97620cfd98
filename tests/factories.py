"""Factories for tests: stock and orders made the way the product makes them."""
from __future__ import annotations

import secrets
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

from django.conf import settings
from django.db import connection, transaction

from kami.catalog.services import price_for
from kami.core import clock
from kami.core.crypto import token_hash
from kami.orders.models import Order, OrderEvent, email_normalise
from kami.orders.services import _new_order_no, order_create
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


def make_orders_at_once(product, quantities, gateway="sandbox"):
    """The pending orders `make_orders` makes (same fields, same helpers: price_for, the order
    number, the token hash, the "created" event), written in two bulk INSERTs: for a sale of
    thousands, where order_create one by one cost more CPU than the sale itself (issue 10).
    Buyers are distinct, so order_create's per-buyer pending-limit locks would decide nothing.
    The orders come back in the order of `quantities`."""
    now, prices, numbers = clock.now(), {}, set()
    orders = []
    for i, q in enumerate(quantities):
        if q not in prices:
            prices[q] = price_for(product=product, quantity=q)
        price = prices[q]
        while (order_no := _new_order_no()) in numbers:  # order_create retries a collision; here, draw again
            pass
        numbers.add(order_no)
        email = f"buyer{i}@example.com"
        orders.append(Order(
            order_no=order_no, product=product, email=email, email_norm=email_normalise(email), quantity=q,
            unit_price=price.unit, amount=price.amount, currency=product.currency, gateway=gateway,
            token_hash=token_hash(secrets.token_urlsafe(24)), created_at=now,
            expires_at=now + timedelta(minutes=settings.KAMI_ORDER_TTL_MINUTES), discount=price.discount))
    with transaction.atomic():  # the orders and their first events, as order_create commits them
        Order.objects.bulk_create(orders, batch_size=1000)
        if any(o.pk is None for o in orders):  # a backend that returns no ids from a bulk insert
            ids = dict(Order.objects.filter(product=product, order_no__in=numbers).values_list("order_no", "id"))
            for o in orders:
                o.pk = ids[o.order_no]
        OrderEvent.objects.bulk_create(
            [OrderEvent(order=o, at=now, kind="created", detail={"gateway": gateway, "amount": str(o.amount)})
             for o in orders], batch_size=1000)
    return orders
