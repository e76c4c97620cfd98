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
