"""Guessing coupon codes: a refused code tells whether a coupon exists, so each client address
has only KAMI_COUPON_TRIES_LIMIT codes refused per 10 minutes, on the product page (?coupon=),
the buy form and the API alike; then no code is looked at, real ones included, until the window
passes. Another address is not affected."""
from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.core.cache import cache
from django.test import Client

from kami.catalog.coupons import coupon_create
from kami.catalog.models import Coupon
from kami.orders.models import Order
from tests.factories import add_keys
from tests.payments.conftest import clock_travel  # noqa: F401 (a fixture)
from tests.sandbox_play import enable_sandbox

pytestmark = pytest.mark.django_db


@pytest.fixture
def shop(make_product, settings):
    cache.clear()
    settings.KAMI_COUPON_TRIES_LIMIT = 3
    enable_sandbox()
    product = make_product("gift", name="Gift card", price=Decimal("10.00"))
    add_keys(product, ["G-1"])
    coupon_create(code="REAL10", kind="percent", value="10", actor="owner")
    yield product
    cache.clear()


def page(client: Client, code: str, language: str = "en") -> str:
    return client.get(f"/p/gift?coupon={code}", HTTP_ACCEPT_LANGUAGE=language).content.decode()


def test_past_the_limit_the_product_page_stops_telling_codes_apart(client, shop, clock_travel):
    # given three wrong guesses from one address
    for guess in ("AAA1", "AAA2", "AAA3"):
        assert "This coupon code does not exist" in page(client, guess)
    # when it tries the real code, and another address does too
    mine, theirs = page(client, "REAL10"), page(Client(REMOTE_ADDR="192.0.2.9"), "REAL10")
    # then this address is told to wait; the other gets the discount
    assert "Too many coupon codes tried" in mine and "10% off" not in mine and "Coupon REAL10" not in mine
    assert "Coupon REAL10" in theirs
    assert "尝试的优惠码过多" in page(client, "REAL10", language="zh-CN")
    # and ten minutes later it may try again
    clock_travel(timedelta(minutes=11))
    assert "Coupon REAL10" in page(client, "REAL10")


def test_the_api_and_the_buy_form_count_and_stop_too(client, shop):
    # given
    order = {"product": "gift", "quantity": 1, "email": "buyer@example.com", "gateway": "sandbox"}
    for guess in ("BBB1", "BBB2"):
        answer = client.post("/api/v1/orders", {**order, "coupon": guess}, content_type="application/json",
                             HTTP_ACCEPT_LANGUAGE="en")
        assert answer.json()["fields"]["coupon"].startswith("This coupon code does not exist")
    client.post("/buy/gift", {"email": "buyer@example.com", "quantity": "1", "gateway": "sandbox", "coupon": "BBB3"})
    # when
    answer = client.post("/api/v1/orders", {**order, "coupon": "REAL10"}, content_type="application/json",
                         HTTP_ACCEPT_LANGUAGE="en")
    # then
    assert answer.status_code == 400 and "Too many coupon codes tried" in answer.json()["fields"]["coupon"]
    assert Order.objects.count() == 0 and Coupon.objects.get().used == 0
    assert client.post("/api/v1/orders", order, content_type="application/json").status_code == 201  # no coupon: fine
