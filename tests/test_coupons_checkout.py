"""Coupons at the edges: POST /api/v1/orders and the product page's buy form take a code, the
product page shows the discount, and a refused code is a specific, translated error with
nothing created."""
from __future__ import annotations

from decimal import Decimal

import pytest

from kami.catalog.coupons import coupon_create
from kami.catalog.models import Coupon
from kami.core import clock
from kami.orders.models import Order
from tests.factories import add_keys
from tests.sandbox_play import enable_sandbox

pytestmark = pytest.mark.django_db


@pytest.fixture
def shop(make_product):
    enable_sandbox()
    product = make_product("gift", name="Gift card", price=Decimal("10.00"))
    add_keys(product, ["G-1", "G-2"])
    coupon_create(code="SAVE20", kind="percent", value="20", usage_limit=5, actor="owner")
    return product


def api_order(client, language="en", **body):
    payload = {"product": "gift", "quantity": 1, "email": "buyer@example.com", "gateway": "sandbox", **body}
    return client.post("/api/v1/orders", payload, content_type="application/json", HTTP_ACCEPT_LANGUAGE=language)


def test_the_api_applies_a_coupon(client, shop):
    # when
    response = api_order(client, coupon="save20", quantity=2)
    # then
    assert response.status_code == 201, response.content
    body = response.json()
    assert (body["amount"], body["discount"], body["coupon"]) == ("16.00", "4.00", "SAVE20")
    detail = client.get(f"/api/v1/orders/{body['order_no']}", HTTP_X_ORDER_TOKEN=body["token"]).json()
    assert (detail["amount"], detail["discount"]) == ("16.00", "4.00")
    assert Coupon.objects.get().used == 0  # counted when the order is paid, not before


@pytest.mark.parametrize("language,text", [("en", "This coupon has expired."), ("zh-hans", "此优惠码已过期。")])
def test_the_api_refuses_a_bad_coupon_in_the_buyers_language(client, shop, language, text):
    # given the coupon has expired
    Coupon.objects.update(expires_at=clock.now())
    # when
    response = api_order(client, language=language, coupon="SAVE20")
    # then
    assert response.status_code == 400
    assert response.json()["fields"] == {"coupon": text}
    assert not Order.objects.exists() and Coupon.objects.get().used == 0


def test_the_product_page_shows_the_discount_of_a_coupon_link(client, shop):
    # when
    page = client.get("/p/gift?coupon=save20", HTTP_ACCEPT_LANGUAGE="en").content.decode()
    # then the discount is shown and the buy form carries the applied code
    assert 'id="coupon-discount"' in page and "Coupon SAVE20:" in page and "2.00" in page and "8.00" in page
    assert '<input type="hidden" name="coupon" value="SAVE20">' in page


def test_the_product_page_says_why_a_coupon_is_refused(client, shop):
    # when
    page = client.get("/p/gift?coupon=NOPE", HTTP_ACCEPT_LANGUAGE="zh-hans").content.decode()
    # then
    assert 'id="coupon-error"' in page and "优惠码不存在" in page
    assert 'name="coupon" value="NOPE"' in page  # what the buyer typed stays in the box
    assert 'type="hidden" name="coupon"' not in page


def test_buying_with_a_coupon_charges_the_discounted_amount(client, shop):
    # when
    response = client.post("/buy/gift", {"quantity": "1", "email": "buyer@example.com", "gateway": "sandbox",
                                         "coupon": "SAVE20"})
    # then
    assert response.status_code == 302
    order = Order.objects.get()
    assert (order.amount, order.discount, order.coupon.code) == (Decimal("8.00"), Decimal("2.00"), "SAVE20")


def test_buying_with_a_used_up_coupon_returns_to_the_product_page_with_the_reason(client, shop):
    # given the coupon's last use is gone
    Coupon.objects.update(usage_limit=1, used=1)
    # when
    response = client.post("/buy/gift", {"quantity": "1", "email": "buyer@example.com", "gateway": "sandbox",
                                          "coupon": "SAVE20"}, HTTP_ACCEPT_LANGUAGE="en")
    # then
    page = response.content.decode()
    assert response.status_code == 400
    assert 'id="product-gift"' in page and "This coupon has been used up." in page
    assert 'value="buyer@example.com"' in page  # what the buyer typed is kept
    assert not Order.objects.exists()
