"""Reading stock: the one place that counts keys per product and status for people to read."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.db.models import Count, Q

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


def import_jobs_list(*, product: Product | None = None, limit: int = 50) -> list[ImportJob]:
    """Recent import jobs, newest first."""
    jobs = ImportJob.objects.select_related("product").order_by("-id")
    if product is not None:
        jobs = jobs.filter(product=product)
    return list(jobs[:limit])
