"""Row locks on orders: the order row alone, never its product.

`select_for_update().select_related("product")` makes Django emit `… FROM orders_order INNER
JOIN catalog_product … FOR UPDATE`, which locks the joined product row too: every confirmation of
one product then waits for the previous one to commit, and SKIP LOCKED on its keys is never
contended. DESIGN.md's lock order is order → payment → keys; the product is read, not locked.
"""
from __future__ import annotations

from django.db import connection
from django.db.models import QuerySet

from kami.orders.models import Order


def orders_for_update() -> QuerySet[Order]:
    """Orders to lock with their product loaded, locking only the orders' rows.

    PostgreSQL (and MySQL 8) lock the order alone with `FOR UPDATE OF`; MariaDB has no `OF`,
    so there the product is read by a second, unlocked query when it is first used."""
    if connection.features.has_select_for_update_of:
        return Order.objects.select_for_update(of=("self",)).select_related("product")
    return Order.objects.select_for_update()
