"""What the dashboard shows, read with a handful of aggregate queries (never one per order).

"Today" and each day of the sales chart are days in the shop's time zone (TIME_ZONE, from
KAMI_TIME_ZONE): their bounds are computed here as aware datetimes and the database only
compares `paid_at` with them, so every engine buckets the same way (MariaDB without its time
zone tables cannot convert zones itself).
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from decimal import Decimal

from django.db.models import Case, Count, IntegerField, Sum, Value, When
from django.utils import timezone

from kami.core import clock, money
from kami.delivery.selectors import DeliveryHealth, deliveries_list, delivery_health
from kami.orders.models import Order
from kami.stock.selectors import StockRow, stock_summary

DAYS = 30
WEEK = 7
COUNT_CAP = 1000  # queue counts stop here ("1000+"): past that the number no longer changes what to do


@dataclass(frozen=True)
class Sales:
    """One currency's paid orders: per day (oldest first, `DAYS` of them) and the three totals."""

    currency: str
    amounts: tuple[Decimal, ...]
    counts: tuple[int, ...]

    @property
    def today(self) -> Decimal:
        return self.amounts[-1]

    @property
    def week(self) -> Decimal:
        return sum(self.amounts[-WEEK:], Decimal(0))

    @property
    def month(self) -> Decimal:
        return sum(self.amounts, Decimal(0))

    @property
    def orders_today(self) -> int:
        return self.counts[-1]

    @property
    def orders_week(self) -> int:
        return sum(self.counts[-WEEK:])

    @property
    def orders_month(self) -> int:
        return sum(self.counts)


@dataclass(frozen=True)
class Dashboard:
    days: tuple[date, ...]  # the chart's days, oldest first; the last one is today
    sales: tuple[Sales, ...]  # one per currency sold in, by currency code
    orders_by_status: tuple[tuple[str, int], ...]  # every status, in the model's order
    stock: tuple[StockRow, ...]  # active products that hold keys
    awaiting_stock: int
    awaiting_manual: int
    deliveries_manual: int  # out of attempts: a person was alerted
    deliveries_failed: int  # the queue's "failed" tab (kami.delivery.selectors.deliveries_list says what it holds)
    deliveries_retrying: int  # failed, another attempt scheduled
    delivery: DeliveryHealth  # the workers running and what waits past its time (kami doctor says the same)

    @property
    def low_stock(self) -> int:
        return sum(1 for row in self.stock if row.low)


def day_starts(*, now: datetime | None = None, days: int = DAYS) -> list[datetime]:
    """`days + 1` aware datetimes: the local midnights opening each of the last `days` days
    (today last), then tomorrow's. Built per day, so a DST change moves the bound with it."""
    local_now = timezone.localtime(now or clock.now())
    zone = local_now.tzinfo
    first = local_now.date() - timedelta(days=days - 1)
    return [timezone.make_aware(datetime.combine(first + timedelta(days=i), time.min), zone) for i in range(days + 1)]


def sales_per_day(*, now: datetime | None = None, days: int = DAYS) -> tuple[tuple[date, ...], tuple[Sales, ...]]:
    """Paid orders (`paid_at` set) per local day and currency; refunded orders are not sales."""
    starts = day_starts(now=now, days=days)
    bucket = Case(*[When(paid_at__gte=starts[i], paid_at__lt=starts[i + 1], then=Value(i)) for i in range(days)],
                  output_field=IntegerField())
    rows = (Order.objects.filter(paid_at__gte=starts[0], paid_at__lt=starts[-1])
            .exclude(status=Order.Status.REFUNDED)
            .annotate(day=bucket).order_by().values("currency", "day")
            .annotate(total=Sum("amount"), n=Count("id")))
    amounts: dict[str, list[Decimal]] = {}
    counts: dict[str, list[int]] = {}
    for row in rows:  # one row per (currency, day) with sales: at most `days` per currency
        # SQLite sums decimals as floats (200.0 -> Decimal("200")): back to the minor unit, "200.00"
        total = money.quantize(Decimal(str(row["total"])), row["currency"])
        amounts.setdefault(row["currency"], [Decimal(0)] * days)[row["day"]] = total
        counts.setdefault(row["currency"], [0] * days)[row["day"]] = row["n"]
    sales = tuple(Sales(currency=c, amounts=tuple(money.quantize(a, c) for a in amounts[c]), counts=tuple(counts[c]))
                  for c in sorted(amounts))
    return tuple(s.date() for s in starts[:-1]), sales


def orders_by_status() -> tuple[tuple[str, int], ...]:
    found = dict(Order.objects.order_by().values_list("status").annotate(n=Count("id")))
    return tuple((status, found.get(status, 0)) for status in Order.Status.values)


def deliveries_needing_a_human() -> dict[str, int]:
    """Rows per tab of the delivery queue, counted by its own selector (one rule for what
    "failed" and "retrying" mean), each up to COUNT_CAP."""
    return {tab: deliveries_list(status=tab, limit=COUNT_CAP).count() for tab in ("manual", "failed", "retrying")}


def dashboard_get(*, now: datetime | None = None) -> Dashboard:
    days, sales = sales_per_day(now=now)
    statuses = orders_by_status()
    by_status = dict(statuses)
    deliveries = deliveries_needing_a_human()
    stock = tuple(row for row in stock_summary() if row.product.active and row.product.needs_keys)
    return Dashboard(
        days=days, sales=sales, orders_by_status=statuses, stock=stock,
        awaiting_stock=by_status[Order.Status.AWAITING_STOCK], awaiting_manual=by_status[Order.Status.AWAITING_MANUAL],
        deliveries_manual=deliveries["manual"], deliveries_failed=deliveries["failed"],
        deliveries_retrying=deliveries["retrying"], delivery=delivery_health(now=now),
    )
