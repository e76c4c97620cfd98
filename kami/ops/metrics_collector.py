"""The Prometheus collector behind `/metrics`: kami.ops.metrics's numbers as metric families,
read when Prometheus scrapes (no counter lives in the code that sells), plus this process's own
figures (CPU, memory, open files: prometheus_client's process and platform collectors).

A family whose query fails is left out of that scrape and `kami_metrics_query_errors` says which:
one slow or broken table must not blank the whole page."""
from __future__ import annotations

import logging
from collections.abc import Callable, Iterator

from django.conf import settings
from prometheus_client import CollectorRegistry, PlatformCollector, ProcessCollector, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric

from kami.ops import metrics

log = logging.getLogger(__name__)


def _orders() -> Iterator[Metric]:
    family = GaugeMetricFamily("kami_orders", "Orders by status, now.", labels=["status"])
    for status, n in metrics.orders_by_status().items():
        family.add_metric([status], n)
    yield family


def _sales() -> Iterator[Metric]:
    paid = CounterMetricFamily("kami_orders_paid", "Orders ever paid, refunded ones included.", labels=["currency"])
    revenue = CounterMetricFamily("kami_revenue", "Sum of the amounts of orders ever paid (in the currency's units).",
                                  labels=["currency"])
    refunded = CounterMetricFamily("kami_orders_refunded", "Paid orders since refunded.", labels=["currency"])
    refunded_amount = CounterMetricFamily("kami_refunded", "Sum of the amounts of refunded orders.", labels=["currency"])
    for row in metrics.sales_by_currency():
        paid.add_metric([row.currency], row.orders)
        revenue.add_metric([row.currency], float(row.amount))
        refunded.add_metric([row.currency], row.refunded_orders)
        refunded_amount.add_metric([row.currency], float(row.refunded_amount))
    yield from (paid, revenue, refunded, refunded_amount)


def _stock() -> Iterator[Metric]:
    stock = metrics.stock_available(max_labels=settings.KAMI_METRICS_MAX_PRODUCTS)
    per_product = GaugeMetricFamily("kami_keys_available", "Keys available per product (0: sold out).",
                                    labels=["product"])
    for slug, n in stock.per_product.items():
        per_product.add_metric([slug], n)
    yield per_product
    yield GaugeMetricFamily("kami_keys_available_all", "Keys available, every product together.",
                            value=stock.available_total)
    yield GaugeMetricFamily("kami_keys_available_products_omitted",
                            "Products left out of kami_keys_available by KAMI_METRICS_MAX_PRODUCTS.",
                            value=stock.omitted_products)


def _deliveries() -> Iterator[Metric]:
    found = metrics.deliveries_by_status()
    by_status = GaugeMetricFamily("kami_deliveries", "Outbox rows (key deliveries, alerts) by channel and status.",
                                  labels=["channel", "status"])
    for (channel, status), n in sorted(found.by_channel_status.items()):
        by_status.add_metric([channel, status], n)
    oldest = GaugeMetricFamily("kami_delivery_oldest_waiting_seconds",
                               "Age of the oldest delivery not yet sent (pending, sending or failed), per channel.",
                               labels=["channel"])
    for channel, seconds in found.oldest_waiting_seconds.items():
        oldest.add_metric([channel], seconds)
    yield from (by_status, oldest)


def _imports() -> Iterator[Metric]:
    family = GaugeMetricFamily("kami_import_jobs", "Key-file import jobs by status.", labels=["status"])
    for status, n in metrics.import_jobs_by_status().items():
        family.add_metric([status], n)
    yield family


def _notifications() -> Iterator[Metric]:
    family = GaugeMetricFamily("kami_notifications_last_hour",
                               "Gateway notifications received in the last hour, by gateway and result "
                               "(result=rejected: refused, did not verify).", labels=["gateway", "result"])
    for (gateway, result), n in sorted(metrics.notifications_recent().items()):
        family.add_metric([gateway, result], n)
    yield family


def _notify_times() -> Iterator[Metric]:
    family = HistogramMetricFamily("kami_notify_seconds_last_hour",
                                   "Seconds from a verified gateway notification's arrival to its result (the "
                                   "confirm included), over the last hour, by gateway: a window, not a counter "
                                   "(histogram_quantile without rate()).", labels=["gateway"])
    for gateway, times in sorted(metrics.notify_times_recent().items()):
        family.add_metric([gateway], [(str(bound), n) for bound, n in times.buckets] + [("+Inf", times.count)],
                          times.sum_seconds)
    yield family


def _workers() -> Iterator[Metric]:
    found = metrics.workers_by_heartbeat()
    yield GaugeMetricFamily("kami_workers_running", "Delivery workers whose heartbeat is newer than "
                            "KAMI_WORKER_LATE_SECONDS (alert when 0).", value=found.running)
    seen = GaugeMetricFamily("kami_worker_last_seen_seconds", "Seconds since each worker's last heartbeat "
                             "(workers not stopped, seen within the last hour).", labels=["worker"])
    for name, seconds in sorted(found.last_seen_seconds.items()):
        seen.add_metric([name], seconds)
    yield seen


FAMILIES: dict[str, Callable[[], Iterator[Metric]]] = {
    "orders": _orders, "sales": _sales, "stock": _stock, "deliveries": _deliveries,
    "imports": _imports, "notifications": _notifications, "notify_times": _notify_times, "workers": _workers,
}


class ShopCollector:
    """Registered once; `collect` runs its queries on every scrape."""

    def collect(self) -> Iterator[Metric]:
        failed = GaugeMetricFamily("kami_metrics_query_errors", "1 when this family's query failed in this scrape.",
                                   labels=["family"])
        for name, family in FAMILIES.items():
            try:
                produced = list(family())
            except Exception:  # noqa: BLE001 — one family's failure must not hide the others
                log.exception("metrics: the %s query failed", name)
                failed.add_metric([name], 1)
                continue
            failed.add_metric([name], 0)
            yield from produced
        yield failed

    def describe(self) -> list[Metric]:
        return []  # no queries at registration time (the database may not be there yet)


def registry_build() -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ShopCollector())
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    return registry


_REGISTRY: CollectorRegistry | None = None


def metrics_render() -> bytes:
    """The exposition text (Prometheus text format 0.0.4) of one scrape."""
    global _REGISTRY
    if _REGISTRY is None:
        _REGISTRY = registry_build()
    return generate_latest(_REGISTRY)
