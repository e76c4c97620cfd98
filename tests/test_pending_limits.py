"""Anti-abuse at checkout: unpaid, unexpired orders are limited per email and per buyer IP,
counted in the database; paid and expired orders do not count."""
from __future__ import annotations

from datetime import timedelta

import pytest

from kami.core import clock
from kami.orders.models import Order
from tests.factories import add_keys
from tests.sandbox_play import enable_sandbox, sandbox_notify

pytestmark = pytest.mark.django_db
TOO_MANY = "too many unpaid orders: pay or wait for them to expire"


@pytest.fixture(autouse=True)
def real_time():
    yield
    clock.travel(None)


def create(client, product, email="buyer@example.com", ip="127.0.0.1"):
    return client.post("/api/v1/orders", {"product": product.slug, "quantity": 1, "email": email, "gateway": "sandbox"},
                       content_type="application/json", REMOTE_ADDR=ip)


def shop(make_product, keys=3):
    enable_sandbox()
    product = make_product()
    add_keys(product, [f"PEND-{i}" for i in range(keys)])
    return product


def test_unpaid_orders_are_limited_per_email(client, make_product, settings):
    # given
    settings.KAMI_PENDING_LIMIT_EMAIL, settings.KAMI_PENDING_LIMIT_IP = 2, 100
    product = shop(make_product)
    # when
    answers = [create(client, product, ip=f"10.0.0.{i}") for i in range(3)]
    other_email = create(client, product, email="other@example.com")
    # then
    assert [a.status_code for a in answers] == [201, 201, 400]
    assert answers[2].json()["fields"] == {"email": TOO_MANY}
    assert other_email.status_code == 201
    assert Order.objects.filter(email="buyer@example.com").count() == 2


def test_unpaid_orders_are_limited_per_ip(client, make_product, settings):
    # given
    settings.KAMI_PENDING_LIMIT_EMAIL, settings.KAMI_PENDING_LIMIT_IP = 100, 2
    product = shop(make_product)
    # when
    answers = [create(client, product, email=f"b{i}@example.com") for i in range(3)]
    other_ip = create(client, product, email="b9@example.com", ip="10.9.9.9")
    # then
    assert [a.status_code for a in answers] == [201, 201, 400]
    assert answers[2].json()["fields"] == {"ip": TOO_MANY}
    assert other_ip.status_code == 201


def test_paid_orders_do_not_count(client, make_product, settings):
    # given two orders, one of them paid
    settings.KAMI_PENDING_LIMIT_EMAIL = 2
    product = shop(make_product)
    first = create(client, product).json()
    create(client, product)
    assert sandbox_notify(client, order_no=first["order_no"], amount=first["amount"]).status_code == 200
    # when
    third = create(client, product)
    # then
    assert third.status_code == 201


def test_expired_orders_do_not_count_even_before_the_sweep(client, make_product, settings):
    # given two unpaid orders past their expiry; the sweep has expired only one of them
    settings.KAMI_PENDING_LIMIT_EMAIL = 2
    product = shop(make_product)
    create(client, product)
    create(client, product)
    assert create(client, product).status_code == 400
    clock.travel(timedelta(minutes=settings.KAMI_ORDER_TTL_MINUTES + 1))
    Order.objects.filter(pk=Order.objects.order_by("id").first().pk).update(status=Order.Status.EXPIRED)
    # when
    later = create(client, product)
    # then
    assert later.status_code == 201


def test_the_storefront_shows_the_limit(client, make_product, settings):
    # given
    settings.KAMI_PENDING_LIMIT_EMAIL = 1
    product = shop(make_product)
    assert create(client, product).status_code == 201
    # when
    page = client.post(f"/buy/{product.slug}", {"email": "buyer@example.com", "gateway": "sandbox", "quantity": "1"})
    # then
    assert page.status_code == 400 and TOO_MANY in page.content.decode()


def test_the_email_limit_ignores_case(client, make_product, settings):
    # given two unpaid orders under one address written two ways
    settings.KAMI_PENDING_LIMIT_EMAIL, settings.KAMI_PENDING_LIMIT_IP = 2, 100
    product = shop(make_product)
    assert create(client, product, email="Buyer@Example.com").status_code == 201
    assert create(client, product, email="buyer@EXAMPLE.COM").status_code == 201
    # when the same buyer tries a third time
    third = create(client, product, email="buyer@example.com")
    # then
    assert third.status_code == 400 and TOO_MANY in third.content.decode()


@pytest.mark.django_db(transaction=True)
def test_the_limit_checks_read_an_index_not_every_pending_order(make_product):
    # given many pending orders (the count runs before every new order: a scan makes checkout quadratic)
    from django.db import connection

    from kami.orders.services import pending_limit_errors
    from django.test.utils import CaptureQueriesContext

    product = shop(make_product)
    now = clock.now()
    Order.objects.bulk_create(Order(order_no=f"PL{i:08d}", product=product, email=f"b{i}@example.com",
                                    email_norm=f"b{i}@example.com", quantity=1, unit_price=1, amount=1,
                                    currency="CNY", gateway="sandbox", token_hash="x", buyer_ip=f"10.0.{i // 250}.{i % 250}",
                                    created_at=now, expires_at=now + timedelta(minutes=30)) for i in range(3000))
    with connection.cursor() as cursor:
        cursor.execute({"postgresql": "ANALYZE orders_order", "mysql": "ANALYZE TABLE orders_order",
                        "sqlite": "ANALYZE"}[connection.vendor])
        if connection.vendor == "mysql":
            cursor.fetchall()
    # when
    with CaptureQueriesContext(connection) as queries:
        pending_limit_errors(email="B7@example.com", buyer_ip="10.0.0.7")
    plans = []
    for query in queries.captured_queries:
        with connection.cursor() as cursor:
            cursor.execute("EXPLAIN " + ("QUERY PLAN " if connection.vendor == "sqlite" else "") + query["sql"])
            plans.append(" ".join(str(cell) for row in cursor.fetchall() for cell in row))
    # then: one probe of each index, no scan of the pending orders
    assert len(plans) == 2
    assert "order_email_norm_status" in plans[0], plans[0]
    assert "order_ip_status" in plans[1], plans[1]
