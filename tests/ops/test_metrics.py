"""`GET /metrics`: Prometheus text read from the database at scrape time, behind a token or
loopback-only access, never showing a buyer's email, an order number or a key."""
from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.test import Client, override_settings
from prometheus_client.parser import text_string_to_metric_families

from kami.core import clock
from kami.delivery.models import OutboxMessage
from kami.ops.metrics import NOTIFY_BUCKETS
from kami.orders.models import Order
from kami.stock.models import ImportJob
from tests.factories import add_keys, make_orders
from tests.sandbox_play import enable_sandbox, sandbox_notify

pytestmark = pytest.mark.django_db(transaction=True)

TOKEN = "metrics-token-for-tests-0123456789"
KEYS = ["MET-KEY-AAAA-0001", "MET-KEY-BBBB-0002", "MET-KEY-CCCC-0003", "MET-KEY-DDDD-0004", "MET-KEY-EEEE-0005"]


def scrape(client: Client | None = None, **headers) -> tuple[dict[tuple[str, tuple], float], str]:
    with override_settings(KAMI_METRICS_TOKEN=TOKEN):
        response = (client or Client()).get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}", **headers)
    assert response.status_code == 200, response.content[:500]
    assert response["Content-Type"].startswith("text/plain; version=0.0.4")
    text = response.content.decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}, text


def value(samples, name: str, **labels) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


def test_a_scrape_counts_the_orders_keys_and_money_the_test_made(make_product):
    # given two key products (5 keys, and 1 key wanted by two orders), a manual one, and a sandbox
    enable_sandbox()
    stocked, scarce = make_product(slug="met-stocked"), make_product(slug="met-scarce")
    make_product(slug="met-manual", kind="manual")
    add_keys(stocked, KEYS)
    add_keys(scarce, ["MET-LAST-KEY-0006"])
    before, _ = scrape()
    client = Client()
    one, two, unpaid = make_orders(stocked, [1, 2, 1])
    last, short = make_orders(scarce, [1, 1])
    # when four are paid (the last one finds no key) and a forged notification is refused
    for order in (one, two, last, short):
        sandbox_notify(client, order_no=order.order_no, amount=str(order.amount))
    forged = sandbox_notify(client, order_no=unpaid.order_no, amount=str(unpaid.amount), signature="0" * 64)
    samples, text = scrape()
    # then every family shows exactly those
    assert forged.status_code != 200 and Order.objects.get(pk=unpaid.pk).status == Order.Status.PENDING
    assert value(samples, "kami_orders", status="fulfilled") == 3
    assert value(samples, "kami_orders", status="awaiting_stock") == 1
    assert value(samples, "kami_orders", status="pending") == 1
    assert value(samples, "kami_orders", status="refunded") == 0
    assert value(samples, "kami_orders_paid_total", currency="CNY") == 4
    assert value(samples, "kami_revenue_total", currency="CNY") == float(Decimal("29.90") * 5)
    assert ("kami_orders_paid_total", (("currency", "CNY"),)) not in before  # the counter appeared with the sales
    assert value(samples, "kami_keys_available", product="met-stocked") == 2
    assert value(samples, "kami_keys_available", product="met-scarce") == 0  # sold out shows, as 0
    assert ("kami_keys_available", (("product", "met-manual"),)) not in samples  # a person delivers it
    assert value(before, "kami_keys_available", product="met-stocked") == 5
    assert value(samples, "kami_keys_available_all") == 2
    assert value(samples, "kami_notifications_last_hour", gateway="sandbox", result="rejected") == 1
    assert value(samples, "kami_notifications_last_hour", gateway="sandbox", result="fulfilled") == 3
    assert value(samples, "kami_notifications_last_hour", gateway="sandbox", result="awaiting_stock") == 1
    # and how long the four verified ones took, as a histogram (the forged one is not timed)
    assert value(samples, "kami_notify_seconds_last_hour_count", gateway="sandbox") == 4
    assert value(samples, "kami_notify_seconds_last_hour_bucket", gateway="sandbox", le="+Inf") == 4
    timed = [value(samples, "kami_notify_seconds_last_hour_bucket", gateway="sandbox", le=str(b)) for b in NOTIFY_BUCKETS]
    assert timed == sorted(timed) and timed[-1] <= 4
    assert 0 <= value(samples, "kami_notify_seconds_last_hour_sum", gateway="sandbox") <= 4 * 10
    assert all(v == 0 for (name, _), v in samples.items() if name == "kami_metrics_query_errors")
    assert "process_cpu_seconds_total" in text and "python_info" in text
    # and nothing about a buyer or a key
    for order in (one, two, unpaid, last, short):
        assert order.email not in text and order.order_no not in text
    for key in [*KEYS, "MET-LAST-KEY-0006"]:
        assert key not in text
    assert "@" not in text


def test_deliveries_and_import_jobs_are_counted_with_the_oldest_waiting_age(make_product):
    # given deliveries in each state, the oldest unsent one 300 s old, and import jobs
    now = clock.now()
    product = make_product(slug="met-imports")
    rows = [("email", "pending", 300), ("email", "failed", 120), ("email", "sent", 900), ("email", "manual", 999),
            ("webhook", "sending", 30), ("webhook", "sent", 5), ("log", "sent", 50)]
    for i, (channel, status, age) in enumerate(rows):
        OutboxMessage.objects.create(kind="order_keys", channel=channel, target=f"buyer{i}@example.com",
                                     dedupe_key=f"met-{i}", status=status, next_attempt_at=now,
                                     created_at=now - timedelta(seconds=age))
    for status in ("running", "running", "queued", "done"):
        ImportJob.objects.create(product=product, status=status, filename="keys.txt", actor="owner", created_at=now)
    # when
    samples, text = scrape()
    # then
    assert value(samples, "kami_deliveries", channel="email", status="pending") == 1
    assert value(samples, "kami_deliveries", channel="email", status="failed") == 1
    assert value(samples, "kami_deliveries", channel="email", status="manual") == 1
    assert value(samples, "kami_deliveries", channel="webhook", status="sent") == 1
    assert 300 <= value(samples, "kami_delivery_oldest_waiting_seconds", channel="email") < 360
    assert 30 <= value(samples, "kami_delivery_oldest_waiting_seconds", channel="webhook") < 90
    assert value(samples, "kami_delivery_oldest_waiting_seconds", channel="log") == 0  # all sent
    assert value(samples, "kami_import_jobs", status="running") == 2
    assert value(samples, "kami_import_jobs", status="queued") == 1
    assert "example.com" not in text


def test_the_product_label_is_capped(make_product):
    # given three products and a cap of two
    for slug in ("cap-a", "cap-b", "cap-c"):
        add_keys(make_product(slug=slug), [f"CAP-{slug}-1"])
    # when
    with override_settings(KAMI_METRICS_MAX_PRODUCTS=2):
        samples, _ = scrape()
    # then the first two show, the third is counted as left out, and every key is in the total
    labelled = {labels for name, labels in samples if name == "kami_keys_available"}
    assert labelled == {(("product", "cap-a"),), (("product", "cap-b"),)}
    assert value(samples, "kami_keys_available_products_omitted") == 1
    assert value(samples, "kami_keys_available_all") == 3


def test_off_by_default():
    with override_settings(KAMI_METRICS_TOKEN="", KAMI_METRICS_LOOPBACK=False):
        assert Client().get("/metrics").status_code == 404


def test_a_token_is_required_once_set():
    with override_settings(KAMI_METRICS_TOKEN=TOKEN, KAMI_METRICS_LOOPBACK=False):
        missing = Client().get("/metrics")
        wrong = Client().get("/metrics", HTTP_AUTHORIZATION="Bearer " + TOKEN[:-1] + "x")
        other_scheme = Client().get("/metrics", HTTP_AUTHORIZATION="Basic " + TOKEN)
        right = Client().get("/metrics", HTTP_AUTHORIZATION="Bearer " + TOKEN)
    assert missing.status_code == wrong.status_code == other_scheme.status_code == 401
    assert missing["WWW-Authenticate"].startswith("Bearer")
    assert b"kami_" not in missing.content + wrong.content
    assert right.status_code == 200 and b"kami_orders" in right.content


def test_loopback_mode_serves_this_machine_only_and_not_through_a_proxy():
    with override_settings(KAMI_METRICS_TOKEN="", KAMI_METRICS_LOOPBACK=True, KAMI_TRUSTED_PROXIES=()):
        local = Client(REMOTE_ADDR="127.0.0.1").get("/metrics")
        remote = Client(REMOTE_ADDR="203.0.113.7").get("/metrics")
        relayed = Client(REMOTE_ADDR="127.0.0.1").get("/metrics", HTTP_X_FORWARDED_FOR="203.0.113.7")
    assert local.status_code == 200 and b"kami_orders" in local.content
    assert remote.status_code == relayed.status_code == 403


def test_only_get():
    with override_settings(KAMI_METRICS_TOKEN=TOKEN):
        assert Client().post("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}").status_code == 405
