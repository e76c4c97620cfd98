"""Reading stock: the one place that counts keys per product and status for people to read."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.db.models import Case, Count, IntegerField, OuterRef, Q, Subquery, Value, When
from django.db.models.functions import Coalesce
from django.db.models.lookups import IsNull

from kami.catalog.models import Product
from kami.core.errors import BadInput
from kami.stock.models import ImportJob, Key

# Order rows are reached through Product's `orders` related name, so stock never imports orders.
AWAITING_STOCK = "awaiting_stock"


@dataclass(frozen=True)
class StockRow:
    product: Product
    available: int
    sold: int
    void: int
    awaiting: int  # paid orders waiting for keys

    @property
    def low(self) -> bool:
        return bool(self.product.low_stock) and self.available < self.product.low_stock


def stock_summary() -> list[StockRow]:
    """Every product with its key counts and awaiting-stock orders, in catalogue order.

    Keys are counted in one grouped query (served by the (product, status, id) index) and orders
    in another: joining both in one query would multiply keys by orders.
    """
    counts: dict[int, dict[str, int]] = {}
    grouped = Key.objects.order_by().values("product_id", "status").annotate(n=Count("id"))
    for row in grouped.values_list("product_id", "status", "n"):
        counts.setdefault(row[0], {})[row[1]] = row[2]
    products = Product.objects.annotate(awaiting=Count("orders", filter=Q(orders__status=AWAITING_STOCK)))
    return [
        StockRow(product=p, available=counts.get(p.pk, {}).get(Key.Status.AVAILABLE, 0),
                 sold=counts.get(p.pk, {}).get(Key.Status.SOLD, 0), void=counts.get(p.pk, {}).get(Key.Status.VOID, 0),
                 awaiting=p.awaiting)
        for p in products.order_by("sort_order", "id")
    ]


def available_count(*, product_id: int, at_most: int | None = None) -> int:
    """Available keys of a product; with `at_most`, stop counting there (cheap on big stock):
    the count the claim, the checkout's sold-out check and the low-stock alert all read."""
    qs = Key.objects.filter(product_id=product_id, status=Key.Status.AVAILABLE)
    if at_most is not None:
        return qs.order_by()[:at_most].count()
    return qs.count()


def available_counts_capped(*, product_ids: list[int], cap: int) -> dict[int, int]:
    """Available keys per product, counted up to `cap` (a product with `cap` or more reads as
    `cap`), in one query whatever the number of products; products with none are left out.

    Per product the query looks for the cap-th available key (one constant for the statement);
    only when there is none, so fewer than cap keys, does it count them. Each product thus reads
    at most cap index entries, however big its stock (the storefront's badges ask this)."""
    rows = Product.objects.filter(pk__in=product_ids).order_by().annotate(left=available_left_capped(cap=cap))
    return {pk: left for pk, left in rows.values_list("pk", "left") if left}


def available_left_capped(*, cap: int) -> Case:
    """available_counts_capped's count as an expression on a Product queryset, for a statement
    that reads the products and their counts at once (the storefront's cached-page reads)."""
    available = Key.objects.filter(product_id=OuterRef("pk"), status=Key.Status.AVAILABLE).order_by()
    capth = Subquery(available.values("id")[cap - 1:cap])
    count = Subquery(available.values("product_id").annotate(n=Count("id")).values("n"), output_field=IntegerField())
    # CASE runs the count only where the cap-th key is missing (PostgreSQL, MariaDB and SQLite
    # evaluate just the branch taken; tests/test_storefront_catalogue.py reads the analysed plan).
    return Case(When(IsNull(capth, True), then=Coalesce(count, Value(0))), default=Value(cap))


def awaiting_count(*, product: Product) -> int:
    """Paid orders of `product` still waiting for keys."""
    return product.orders.filter(status=AWAITING_STOCK).count()


@dataclass(frozen=True)
class KeyRow:
    """A key as a list page shows it: never its plaintext, nor its ciphertext."""

    id: int
    fingerprint: str  # the first 12 hex characters
    status: str
    created_at: datetime
    sold_at: datetime | None
    void_reason: str
    batch_id: int | None
    order_nos: tuple[str, ...]  # a reusable key can have gone to many orders


def keys_list(*, product: Product, status: str | None = None, fingerprint_prefix: str = "", limit: int = 200,
              before: int | None = None) -> list[KeyRow]:
    """The product's keys, newest first; `before` (a key id) gives the next page."""
    keys = Key.objects.filter(product_id=product.pk)
    if status:
        if status not in Key.Status.values:
            raise BadInput(f"status {status!r}: choose one of {', '.join(Key.Status.values)}")
        keys = keys.filter(status=status)
    prefix = fingerprint_prefix.strip().lower()
    if prefix:
        if set(prefix) - set("0123456789abcdef"):
            raise BadInput(f"fingerprint prefix {fingerprint_prefix!r}: use hex characters (0-9, a-f)")
        keys = keys.filter(fingerprint__gte=prefix, fingerprint__lt=prefix + "g", fingerprint__startswith=prefix)
    if before is not None:
        keys = keys.filter(id__lt=before)
    rows = list(keys.order_by("-id").values_list("id", "fingerprint", "status", "created_at", "sold_at", "void_reason",
                                                 "batch_id")[:max(1, min(limit, 1000))])
    orders: dict[int, list[str]] = {}
    # Order numbers through OrderKey's related name: stock never imports orders.
    for pk, order_no in (Key.objects.filter(id__in=[r[0] for r in rows], order_keys__isnull=False)
                         .order_by("id", "order_keys__id").values_list("id", "order_keys__order__order_no")):
        orders.setdefault(pk, []).append(order_no)
    return [KeyRow(id=pk, fingerprint=fp[:12], status=st, created_at=created, sold_at=sold, void_reason=reason,
                   batch_id=batch, order_nos=tuple(orders.get(pk, ())))
            for pk, fp, st, created, sold, reason, batch in rows]


def import_job_get(*, job_id: int) -> ImportJob | None:
    return ImportJob.objects.select_related("product").filter(pk=job_id).first()
