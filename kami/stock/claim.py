"""Claiming keys for an order: the one piece of code that decides which keys are sold.

Runs inside the confirm transaction (fulfilment). Rows are locked with
`SELECT … FOR UPDATE SKIP LOCKED` in id order (claim_order), so concurrent buyers take different
keys instead of queueing on one row, and then marked sold with a conditional UPDATE whose row
count is checked: a key is sold at most once even if a lock were somehow missing.
"""
from __future__ import annotations

from django.db import connection
from django.db.models import F, Lookup, Q, QuerySet

from kami.catalog.models import Product
from kami.core import clock
from kami.stock.models import Key
from kami.stock.selectors import available_count


class ShortClaim(Exception):
    """SKIP LOCKED found too few keys; the skipped rows may be held by a transaction that will
    roll back. The caller retries the whole transaction with `wait=True` before parking the
    order (a retry inside the transaction could deadlock on the rows it already holds)."""


def claim_order() -> tuple[str, ...]:
    """The ORDER BY that lets each engine read its claim index in order. SQLite drops the constant
    `status` from the sort keys and reads `key_claim (product_id, status, id)`. MariaDB, given
    `status, id`, sorts all available rows (filesort, locking them all) but reads `key_claim` in
    order for plain `id`. PostgreSQL: `product_id, id`, with the product named by `= ANY(…)`
    (`_ProductAmong`, below). Each is checked with EXPLAIN in tests/concurrency/test_claim_plan.py."""
    return {"mysql": ("id",), "postgresql": ("product_id", "id")}.get(connection.vendor, ("status", "id"))


class _ProductAmong(Lookup):
    """`product_id = ANY(ARRAY[…])` (PostgreSQL): the product, so that the planner cannot treat it as
    a constant. With `product_id = 42` every column the claim filters on is a constant, the order
    left is plain `id`, and the primary key supplies it too; with statistics from before a sale
    (every key available: a flash sale right after an import, until autovacuum analyzes the table
    again) the planner expects the first `quantity` rows of the primary key to do, and walks it
    through every sold key (7,500 rows for 5 keys; 8 ms a claim at 10,000 sold in
    bench/notify_throughput.py). Named through `= ANY`, the product is not a constant: the order
    `product_id, id` needs an index that leads with the product, `key_claim_available` or
    `key_claim`, which hold the product's available keys together (confirm_sql's statements
    claim the same way)."""

    lookup_name = "product_among"
    prepare_rhs = False

    def as_sql(self, compiler, connection):
        lhs, lhs_params = self.process_lhs(compiler, connection)
        rhs, rhs_params = self.process_rhs(compiler, connection)
        return f"{lhs} = ANY({rhs})", [*lhs_params, *rhs_params]


def can_skip_locked() -> bool:
    return connection.features.has_select_for_update_skip_locked


def keys_claim(*, product: Product, quantity: int, wait: bool = False) -> list[int] | None:
    """Lock and mark sold `quantity` keys of `product`; return their ids, or None when the
    stock is short (nothing is changed then: no partial fulfilment).

    A reusable product hands out all its available keys *imported as reusable* and sells none of
    them; a unique product claims only keys imported as unique. So a key's way of being sold is
    fixed when it is stored, whatever the product's kind says later (issue 16: an operator
    switching a unique product to reusable handed one buyer the whole stock, unsold).
    """
    if product.kind == Product.Kind.REUSABLE:
        ids = [key.id for key in claim_queryset(product=product, wait=wait)]
        return ids or None
    ids = [key.id for key in claim_queryset(product=product, wait=wait)[:quantity]]
    if len(ids) < quantity:
        # Rows locked by in-flight transactions still read as available here: if that count
        # covers the order, some locked rows may come free, so look again waiting on locks.
        if not wait and can_skip_locked() and available_count(product_id=product.pk, at_most=quantity) >= quantity:
            raise ShortClaim()
        return None
    sold = Key.objects.filter(id__in=ids, status=Key.Status.AVAILABLE).update(status=Key.Status.SOLD, sold_at=clock.now())
    if sold != len(ids):
        raise RuntimeError(f"claimed {len(ids)} keys but marked {sold} sold; rolling back")
    return ids


def claim_queryset(*, product: Product, wait: bool = False) -> QuerySet[Key]:
    """The claim's one query (its plan is checked with EXPLAIN after ANALYZE in
    tests/concurrency/test_claim_plan.py): available keys of the product's kind in id order;
    locked with SKIP LOCKED (or waiting, `wait`) for a unique product, read unlocked for a
    reusable one, whose keys are never sold."""
    reusable = product.kind == Product.Kind.REUSABLE
    of_product = (_ProductAmong(F("product_id"), [product.pk]) if connection.vendor == "postgresql"
                  else Q(product_id=product.pk))
    available = Key.objects.filter(of_product, status=Key.Status.AVAILABLE, reusable=reusable)
    if not reusable:
        available = available.select_for_update(skip_locked=not wait)
    # .only("id"), not values_list: with values_list Django orders by the select position
    # ("ORDER BY 1"), which MariaDB does not match to the index order.
    return available.order_by(*claim_order()).only("id")


