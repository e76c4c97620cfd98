"""Factories for tests: stock and orders made the way the product makes them."""
from __future__ import annotations

import secrets
from concurrent.futures import ThreadPoolExecutor
from django.db import connection, transaction

from kami.catalog.services import price_for
from kami.core import clock
from kami.orders.models import Order, OrderEvent
from kami.orders.services import order_create, order_created_detail, order_no_new, order_unsaved
from kami.stock.models import Key
from kami.stock.vault import key_seal


def add_keys(product, texts) -> list[Key]:
    rows, reusable = [], product.kind == "reusable"  # what the importer records
    for text in texts:
        key_id, blob, fp = key_seal(text, product_id=product.pk)
        rows.append(Key(product=product, key_id=key_id, ciphertext=blob, fingerprint=fp, reusable=reusable))
    return Key.objects.bulk_create(rows, batch_size=1000)


def sold_ahead(hot, *, sold: int, statistics: str) -> None:
    """The first `sold` keys of `hot` sold, with the planner's statistics gathered
    after the sale, or (`before`) when every key was still available: a flash sale right after an
    import, before autovacuum analyzes the table again. Either way the sale's dead index entries
    are vacuumed, as autovacuum does (VACUUM alone leaves the column statistics as they were)."""
    with connection.cursor() as cursor:
        if statistics == "before":
            cursor.execute("ANALYZE stock_key")
        ids = list(Key.objects.filter(product=hot).order_by("id").values_list("id", flat=True)[:sold])
        Key.objects.filter(id__in=ids).update(status=Key.Status.SOLD)
        cursor.execute("VACUUM ANALYZE stock_key" if statistics == "after" else "VACUUM stock_key")


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
    """The pending orders `make_orders` makes (order_create's own row and "created" event:
    orders.services.order_unsaved, order_created_detail), written in two bulk INSERTs: for a sale
    of thousands, where order_create one by one cost more CPU than the sale itself (issue 10).
    Buyers are distinct, so order_create's per-buyer pending-limit locks would decide nothing.
    The orders come back in the order of `quantities`."""
    now, prices, numbers, orders = clock.now(), {}, set(), []
    for i, q in enumerate(quantities):
        price = prices.setdefault(q, price_for(product=product, quantity=q))
        order = order_unsaved(product=product, quantity=q, email=f"buyer{i}@example.com", gateway=gateway, price=price,
                              token=secrets.token_urlsafe(24), now=now)
        while order.order_no in numbers:  # order_create retries a collision; here, draw again
            order.order_no = order_no_new()
        numbers.add(order.order_no)
        orders.append(order)
    with transaction.atomic():  # the orders and their first events, as order_create commits them
        Order.objects.bulk_create(orders, batch_size=1000)
        if any(o.pk is None for o in orders):  # a backend that returns no ids from a bulk insert
            ids = dict(Order.objects.filter(product=product, order_no__in=numbers).values_list("order_no", "id"))
            for o in orders:
                o.pk = ids[o.order_no]
        OrderEvent.objects.bulk_create(
            [OrderEvent(order=o, at=now, kind="created", detail=order_created_detail(gateway=gateway, price=prices[o.quantity]))
             for o in orders], batch_size=1000)
    return orders
