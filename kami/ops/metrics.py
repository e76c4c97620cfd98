"""What `/metrics` reports, read from the database at scrape time: one aggregate query per family.

Every web process answers the same numbers (they live in the database, not in process memory),
so any process can be scraped and nothing is lost when one restarts. Only counts, sums, product
slugs, gateway and channel names leave here: never an email address, an order number or a key.
Label sets are capped (`max_labels`) so a shop with thousands of products cannot flood Prometheus."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from django.db.models import Count, Min, Q, Sum

from kami.catalog.models import Product
from kami.core import clock, money
from kami.delivery.heartbeats import workers_seen
from kami.delivery.models import OutboxMessage
from kami.orders.models import Order
from kami.payments.models import Notification
from kami.stock.models import ImportJob, Key

# Not sent yet: still to be tried, being tried, or waiting for a retry.
DELIVERY_WAITING = (OutboxMessage.Status.PENDING, OutboxMessage.Status.SENDING, OutboxMessage.Status.FAILED)
NOTIFICATION_WINDOW = timedelta(hours=1)
WORKER_LABELS_WINDOW = timedelta(hours=1)  # a worker silent longer leaves kami_worker_last_seen_seconds
MAX_WORKER_LABELS = 50


@dataclass(frozen=True)
class Sales:
    currency: str
    orders: int  # orders ever paid (`paid_at` set), refunded ones included: a counter never goes down
    amount: Decimal
    refunded_orders: int
    refunded_amount: Decimal


@dataclass(frozen=True)
class Stock:
    per_product: dict[str, int]  # slug -> keys available, for at most `max_labels` products (lowest ids)
    omitted_products: int  # products left out of `per_product` by the cap
    available_total: int  # every product's, the omitted ones included


@dataclass(frozen=True)
class Deliveries:
    by_channel_status: dict[tuple[str, str], int]
    oldest_waiting_seconds: dict[str, float]  # per channel; 0 when nothing waits


def orders_by_status() -> dict[str, int]:
    counts = {status: 0 for status in Order.Status.values}
    for row in Order.objects.order_by().values("status").annotate(n=Count("id")):
        counts[row["status"]] = row["n"]
    return counts


def sales_by_currency() -> list[Sales]:
    """Paid orders and their amounts (computed on the server, so what the shop asked and was paid)."""
    refunded = Q(status=Order.Status.REFUNDED)
    rows = (Order.objects.filter(paid_at__isnull=False).order_by().values("currency")
            .annotate(n=Count("id"), total=Sum("amount"), n_refunded=Count("id", filter=refunded),
                      refunded=Sum("amount", filter=refunded)))
    return [Sales(currency=row["currency"], orders=row["n"], amount=_money(row["total"], row["currency"]),
                  refunded_orders=row["n_refunded"], refunded_amount=_money(row["refunded"], row["currency"]))
            for row in sorted(rows, key=lambda r: r["currency"])]


def _money(value, currency: str) -> Decimal:
    # SQLite sums decimals as floats (59.8 -> 59.800000000000004): back to the currency's minor unit.
    return money.quantize(Decimal(str(value or 0)), currency)


def stock_available(*, max_labels: int) -> Stock:
    """Keys available for products that sell keys; a product with none shows 0 (sold out)."""
    without_stock = (Product.Kind.MANUAL, Product.Kind.DYNAMIC)  # a person delivers, or the merchant's system mints
    products = list(Product.objects.exclude(kind__in=without_stock).order_by("id").values_list("id", "slug"))
    counts = dict(Key.objects.filter(status=Key.Status.AVAILABLE).order_by().values("product_id")
                  .annotate(n=Count("id")).values_list("product_id", "n"))
    shown = products[:max_labels]
    return Stock(per_product={slug: counts.get(pk, 0) for pk, slug in shown},
                 omitted_products=len(products) - len(shown), available_total=sum(counts.values()))


def deliveries_by_status(*, now: datetime | None = None) -> Deliveries:
    now = now or clock.now()
    by_channel_status: dict[tuple[str, str], int] = {}
    oldest: dict[str, datetime] = {}
    rows = (OutboxMessage.objects.order_by().values("channel", "status")
            .annotate(n=Count("id"), oldest=Min("created_at", filter=Q(status__in=DELIVERY_WAITING))))
    for row in rows:
        by_channel_status[(row["channel"], row["status"])] = row["n"]
        if row["oldest"] is not None:
            oldest[row["channel"]] = min(row["oldest"], oldest.get(row["channel"], row["oldest"]))
    channels = {channel for channel, _ in by_channel_status}
    return Deliveries(by_channel_status=by_channel_status,
                      oldest_waiting_seconds={c: max(0.0, (now - oldest[c]).total_seconds()) if c in oldest else 0.0
                                              for c in sorted(channels)})


def import_jobs_by_status() -> dict[str, int]:
    counts = {status: 0 for status in ImportJob.Status.values}
    for row in ImportJob.objects.order_by().values("status").annotate(n=Count("id")):
        counts[row["status"]] = row["n"]
    return counts


def notifications_recent(*, now: datetime | None = None) -> dict[tuple[str, str], int]:
    """Gateway notifications received in the last hour, by gateway and result (`rejected`: a
    signature or merchant id that did not verify — forgeries, or a gateway key that changed)."""
    since = (now or clock.now()) - NOTIFICATION_WINDOW
    rows = (Notification.objects.filter(received_at__gte=since).order_by().values("gateway", "result")
            .annotate(n=Count("id")))
    return {(row["gateway"], row["result"]): row["n"] for row in rows}


# Upper bounds (seconds) of kami_notify_seconds_last_hour's buckets.
NOTIFY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


@dataclass(frozen=True)
class NotifyTimes:
    buckets: list[tuple[float, int]]  # (upper bound in seconds, notifications at most that long), cumulative
    count: int
    sum_seconds: float


def notify_times_recent(*, now: datetime | None = None) -> dict[str, NotifyTimes]:
    """How long the last hour's verified notifications took from arrival to their result, per
    gateway (one query: a count per bucket, summed on the database)."""
    since = (now or clock.now()) - NOTIFICATION_WINDOW
    counts = {f"le{n}": Count("id", filter=Q(handled_ms__lte=round(bound * 1000)))
              for n, bound in enumerate(NOTIFY_BUCKETS)}
    rows = (Notification.objects.filter(received_at__gte=since, verified=True, handled_ms__isnull=False).order_by()
            .values("gateway").annotate(n=Count("id"), total=Sum("handled_ms"), **counts))
    return {row["gateway"]: NotifyTimes(buckets=[(bound, row[f"le{n}"]) for n, bound in enumerate(NOTIFY_BUCKETS)],
                                        count=row["n"], sum_seconds=(row["total"] or 0) / 1000)
            for row in rows}


@dataclass(frozen=True)
class Workers:
    running: int  # seen within KAMI_WORKER_LATE_SECONDS and not stopped
    last_seen_seconds: dict[str, float]  # worker name -> seconds since its heartbeat (not stopped, seen in the last hour)


def workers_by_heartbeat(*, now: datetime | None = None) -> Workers:
    """Workers from their heartbeat rows. A killed worker keeps its label, age growing, for an
    hour (long enough for an alert to name it), then leaves; a cleanly stopped one leaves at once."""
    now = now or clock.now()
    seen = workers_seen(now=now)
    recent = [w for w in seen if w.stopped_at is None and w.age_seconds <= WORKER_LABELS_WINDOW.total_seconds()]
    return Workers(running=sum(w.running for w in seen),
                   last_seen_seconds={w.name: w.age_seconds for w in recent[:MAX_WORKER_LABELS]})
