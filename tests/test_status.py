"""The order status JSON the order and QR pages poll: same access rule as the order page."""
from __future__ import annotations

import re
from datetime import datetime

import pytest

from kami.delivery.links import order_link_signature
from kami.orders.models import Order
from tests.factories import add_keys
from tests.sandbox_play import enable_sandbox, sandbox_notify

pytestmark = pytest.mark.django_db


def create_order(client, product, quantity=1):
    response = client.post("/api/v1/orders", {"product": product.slug, "quantity": quantity, "email": "b@example.com",
                                              "gateway": "sandbox"}, content_type="application/json")
    assert response.status_code == 201, response.content
    return response.json()


def test_status_with_the_token_follows_the_order(client, make_product):
    # given a pending order
    enable_sandbox()
    product = make_product()
    add_keys(product, ["ST-1"])
    order = create_order(client, product)
    url = f"/orders/{order['order_no']}/status?token={order['token']}"
    # when
    before = client.get(url)
    sandbox_notify(client, order_no=order["order_no"], amount=order["amount"])
    after = client.get(url)
    # then
    assert before.status_code == 200 and before.json() == {"status": "pending"}
    assert after.json() == {"status": "fulfilled"}
    assert before["Cache-Control"] == "no-store"
    assert "ST-1" not in after.content.decode()


def test_status_with_the_signed_email_link(client, make_product):
    # given
    enable_sandbox()
    product = make_product()
    add_keys(product, ["ST-2"])
    order = create_order(client, product)
    # when
    response = client.get(f"/orders/{order['order_no']}/status?sig={order_link_signature(order['order_no'])}")
    # then
    assert response.json() == {"status": Order.Status.PENDING}


def test_status_without_a_valid_token_is_404(client, make_product):
    # given
    enable_sandbox()
    product = make_product()
    add_keys(product, ["ST-3"])
    order = create_order(client, product)
    # when
    bare = client.get(f"/orders/{order['order_no']}/status")
    wrong = client.get(f"/orders/{order['order_no']}/status?token=nope")
    unknown = client.get("/orders/NOPE/status?token=nope")
    # then
    assert bare.status_code == wrong.status_code == unknown.status_code == 404
    assert "status" not in bare.json()


def test_pending_order_page_polls_with_a_no_script_fallback(client, make_product):
    # given
    enable_sandbox()
    product = make_product()
    add_keys(product, ["ST-4"])
    order = create_order(client, product)
    # when
    page = client.get(f"/orders/{order['order_no']}?token={order['token']}").content.decode()
    # then
    assert f'data-status-url="/orders/{order["order_no"]}/status"' in page
    assert "storefront/status" in page and '<noscript><meta http-equiv="refresh" content="3"></noscript>' in page


def test_qr_page_counts_down_and_polls_the_order(make_product, rf):
    # given a pending order rendered on the scan-to-pay page
    from django.template.loader import render_to_string

    from tests.factories import make_orders
    product = make_product()
    add_keys(product, ["ST-5"])
    (order,) = make_orders(product, [1])
    # when
    page = render_to_string("storefront/pay_qr.html", {"order": order, "qr_svg": "", "gateway": "alipay",
                                                       "order_url": f"/orders/{order.order_no}?token=t"})
    # then
    expires = datetime.fromisoformat(re.search(r'data-expires="([^"]+)"', page).group(1))
    assert expires == order.expires_at
    assert 'id="countdown"' in page and "storefront/status" in page and 'id="order-link"' in page
