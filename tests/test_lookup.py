"""Order lookup (/lookup): order number + email, or email + lookup password. Keys only when both
factors match; every miss is the same answer; attempts are limited per IP and per email."""
from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.core.cache import cache
from django.test import Client

from kami.core import clock
from kami.delivery.links import order_link_signature
from kami.orders.models import Order
from kami.orders.services import order_create
from tests.factories import add_keys
from tests.sandbox_play import enable_sandbox, sandbox_notify

pytestmark = pytest.mark.django_db
CSRF = re.compile(rb'name="csrfmiddlewaretoken" value="[^"]*"')


@pytest.fixture(autouse=True)
def fresh_counters():
    cache.clear()
    yield
    cache.clear()
    clock.travel(None)


def paid_order(client, product, *, email="buyer@example.com", lookup_password="open-sesame") -> dict:
    body = {"product": product.slug, "quantity": 1, "email": email, "gateway": "sandbox"}
    if lookup_password:
        body["lookup_password"] = lookup_password
    created = client.post("/api/v1/orders", body, content_type="application/json")
    assert created.status_code == 201, created.content
    data = created.json()
    assert sandbox_notify(client, order_no=data["order_no"], amount=data["amount"]).status_code == 200
    return data


def shop(make_product, keys=("LOOKUP-KEY-1",)):
    enable_sandbox()
    product = make_product(name="Gift card")
    add_keys(product, list(keys))
    return product


def miss_body(response) -> bytes:
    return CSRF.sub(b"", response.content)  # the masked CSRF token differs on every page


def test_order_number_and_email_open_the_order_with_its_keys(client, make_product):
    # given
    product = shop(make_product)
    order = paid_order(client, product, lookup_password="")
    # when
    found = client.post("/lookup", {"order_no": order["order_no"], "email": "  BUYER@example.com "})
    # then
    assert found.status_code == 302
    assert found["Location"].endswith(f"/orders/{order['order_no']}?sig={order_link_signature(order['order_no'])}")
    page = client.get(found["Location"])
    assert "LOOKUP-KEY-1" in page.content.decode()


def test_email_and_password_list_the_order_and_its_link_shows_the_keys(client, make_product):
    # given
    product = shop(make_product)
    order = paid_order(client, product)
    # when
    found = client.post("/lookup", {"email": "buyer@example.com", "password": "open-sesame"})
    # then
    assert found.status_code == 200 and found["Cache-Control"] == "no-store"
    html = found.content.decode()
    assert order["order_no"] in html and "LOOKUP-KEY-1" not in html  # a list of links, not keys
    link = re.search(r'<ol class="found">.*?href="([^"]*/orders/[^"]+)"', html, re.S).group(1).replace("&amp;", "&")
    assert "LOOKUP-KEY-1" in client.get(link).content.decode()


def test_every_miss_gets_the_same_answer(client, make_product):
    # given an order with a lookup password, and another buyer's order without one
    product = shop(make_product, keys=("K-1", "K-2"))
    order = paid_order(client, product)
    paid_order(client, product, email="nopass@example.com", lookup_password="")
    # when
    misses = [
        client.post("/lookup", {"email": "buyer@example.com", "password": "wrong-password"}),
        client.post("/lookup", {"email": "nobody@example.com", "password": "open-sesame"}),
        client.post("/lookup", {"email": "nopass@example.com", "password": "open-sesame"}),
        client.post("/lookup", {"order_no": order["order_no"], "email": "other@example.com"}),
        client.post("/lookup", {"order_no": "999999999999999999", "email": "buyer@example.com"}),
        client.post("/lookup", {"email": "buyer@example.com"}),
    ]
    # then
    assert {m.status_code for m in misses} == {200}
    assert len({miss_body(m) for m in misses}) == 1
    html = misses[0].content.decode()
    assert "没有与这些信息相符的订单" in html and "K-1" not in html and not re.search(r"/orders/(?!recent\b)", html)


def test_the_miss_is_translated(client):
    response = client.post("/lookup", {"email": "nobody@example.com", "password": "xxxx"}, HTTP_ACCEPT_LANGUAGE="zh-CN")
    assert "没有与这些信息相符的订单" in response.content.decode()


def test_only_the_five_most_recent_matching_orders_are_listed(client, make_product, settings):
    # given seven orders with the same email and password, one minute apart
    settings.KAMI_PENDING_LIMIT_EMAIL = 0
    product = shop(make_product)
    orders = []
    for minute in range(7):
        clock.travel(timedelta(minutes=minute))
        orders.append(order_create(product=product, quantity=1, email="buyer@example.com", gateway="sandbox",
                                   lookup_password="open-sesame")[0])
    clock.travel(None)
    # when
    html = client.post("/lookup", {"email": "buyer@example.com", "password": "open-sesame"}).content.decode()
    # then
    listed = [o.order_no for o in orders if o.order_no in html]
    assert listed == [o.order_no for o in orders[2:]]


def test_lookup_is_limited_per_ip_and_resets_after_the_window(client, settings):
    # given
    settings.KAMI_LOOKUP_LIMIT_IP, settings.KAMI_LOOKUP_LIMIT_EMAIL = 3, 100
    # when
    answers = [client.post("/lookup", {"email": f"b{i}@example.com", "password": "xxxx"}).status_code for i in range(4)]
    other_ip = client.post("/lookup", {"email": "c@example.com", "password": "xxxx"}, REMOTE_ADDR="10.0.0.9")
    clock.travel(timedelta(seconds=settings.KAMI_LOOKUP_WINDOW_SECONDS))
    later = client.post("/lookup", {"email": "d@example.com", "password": "xxxx"})
    # then
    assert answers == [200, 200, 200, 429]
    assert other_ip.status_code == 200 and later.status_code == 200


def test_lookup_is_limited_per_email_across_ips(client, settings):
    # given
    settings.KAMI_LOOKUP_LIMIT_IP, settings.KAMI_LOOKUP_LIMIT_EMAIL = 100, 2
    # when
    answers = [client.post("/lookup", {"email": "Victim@example.com", "password": "xxxx"},
                           REMOTE_ADDR=f"10.0.0.{i}").status_code for i in range(3)]
    too_many = client.post("/lookup", {"email": "victim@example.com", "order_no": "1"}, REMOTE_ADDR="10.0.0.99",
                           HTTP_ACCEPT_LANGUAGE="en")
    other_email = client.post("/lookup", {"email": "other@example.com", "password": "xxxx"})
    # then
    assert answers == [200, 200, 429]
    assert too_many.status_code == 429 and "Too many attempts" in too_many.content.decode()
    assert other_email.status_code == 200


def test_lookup_needs_the_csrf_token(make_product):
    client = Client(enforce_csrf_checks=True)
    assert client.get("/lookup").status_code == 200
    assert client.post("/lookup", {"email": "buyer@example.com", "password": "open-sesame"}).status_code == 403


def test_lookup_password_length_is_checked_at_checkout(client, make_product):
    product = shop(make_product)
    response = client.post("/api/v1/orders", {"product": product.slug, "quantity": 1, "email": "b@example.com",
                                              "gateway": "sandbox", "lookup_password": "abc"},
                           content_type="application/json")
    assert response.status_code == 400 and "lookup_password" in response.json()["fields"]
    assert not Order.objects.exists()


def test_lookup_password_is_stored_salted_and_slow_hashed(client, make_product):
    product = shop(make_product, keys=("K-1", "K-2"))
    paid_order(client, product)
    paid_order(client, product, email="b2@example.com")
    hashes = list(Order.objects.values_list("lookup_hash", flat=True))
    assert "open-sesame" not in "".join(hashes) and hashes[0] != hashes[1]
