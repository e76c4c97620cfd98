"""The order status JSON the order and QR pages poll (same access rule as the order page), and
which orders the order page keeps following, how often, and which it leaves alone."""
from __future__ import annotations

import re
from datetime import datetime, timedelta

import pytest

from kami.core import clock
from kami.delivery.links import order_link_signature
from kami.orders.models import Order
from kami.storefront.follow import order_follow
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


WAITING = [Order.Status.AWAITING_STOCK, Order.Status.AWAITING_MANUAL, Order.Status.FLAGGED]
FINAL = [Order.Status.FULFILLED, Order.Status.REFUNDED]  # and EXPIRED, once LATE_PAYMENT_WINDOW has passed


def order_page_in(client, product, status, *, paid_minutes_ago=5, expired_minutes_ago=None):
    """The order page of an order put straight into `status` (how it got there is tested with
    fulfilment): the page only reads it."""
    order = create_order(client, product)
    paid_at = clock.now() - timedelta(minutes=paid_minutes_ago) if status != Order.Status.EXPIRED else None
    fields = {"status": status, "paid_at": paid_at}
    if expired_minutes_ago is not None:
        fields["expires_at"] = clock.now() - timedelta(minutes=expired_minutes_ago)
    Order.objects.filter(order_no=order["order_no"]).update(**fields)
    return client.get(f"/orders/{order['order_no']}?token={order['token']}").content.decode()


@pytest.mark.parametrize("status", WAITING)
def test_a_paid_order_still_waiting_is_followed_gently(client, make_product, status):
    # given a paid order waiting on stock, on staff, or on a review
    enable_sandbox()
    product = make_product()
    add_keys(product, ["ST-6"])
    # when its page opens
    page = order_page_in(client, product, status)
    # then the script asks every 15 s (not the 3 s of a payment) and the no-script page reloads every 30 s
    assert f'data-status="{status}"' in page and 'data-follow="15"' in page
    assert "storefront/status.js" in page
    assert '<noscript><meta http-equiv="refresh" content="30"></noscript>' in page


@pytest.mark.parametrize("status", WAITING)
def test_an_order_waiting_for_hours_is_reloaded_without_script_every_five_minutes(client, make_product, status):
    # given an order paid two hours ago and still waiting
    enable_sandbox()
    product = make_product()
    add_keys(product, ["ST-7"])
    # when its page opens
    page = order_page_in(client, product, status, paid_minutes_ago=120)
    # then
    assert '<noscript><meta http-equiv="refresh" content="300"></noscript>' in page
    assert 'data-follow="15"' in page  # the script backs off by itself


@pytest.mark.parametrize("status", [*FINAL, Order.Status.EXPIRED])
def test_an_order_in_a_final_state_is_not_followed(client, make_product, status):
    # given (an expired order an hour past its expiry: no late payment is waited for any more)
    enable_sandbox()
    product = make_product()
    add_keys(product, ["ST-8"])
    # when
    page = order_page_in(client, product, status, expired_minutes_ago=60 if status == Order.Status.EXPIRED else None)
    # then nothing asks again: no script, no meta refresh, no refresh link
    assert f'data-status="{status}"' in page
    assert "data-follow" not in page and "storefront/status.js" not in page
    assert 'http-equiv="refresh"' not in page


@pytest.mark.parametrize("status", [s for s in Order.Status.values if s != Order.Status.EXPIRED])
def test_every_status_is_followed_unless_final(status):
    # given an order in each status there is (one added later lands here too)
    order = Order(status=status, created_at=clock.now())
    # when / then
    assert (order_follow(order=order, now=clock.now()) is None) == (status in FINAL)


def test_an_expired_order_is_followed_only_while_a_late_payment_may_still_arrive(client, make_product):
    # given an order that expired a minute ago: a last-moment payment's notification may still come,
    # and it would flag the order ("we are checking this payment")
    enable_sandbox()
    product = make_product()
    add_keys(product, ["ST-10"])
    page = order_page_in(client, product, Order.Status.EXPIRED, expired_minutes_ago=1)
    assert 'data-status="expired"' in page and 'data-follow="15"' in page and "storefront/status.js" in page
    assert '<noscript><meta http-equiv="refresh" content="30"></noscript>' in page
    # when it expired 31 minutes ago
    page = order_page_in(client, product, Order.Status.EXPIRED, expired_minutes_ago=31)
    # then the page stops asking
    assert "data-follow" not in page and "storefront/status.js" not in page and 'http-equiv="refresh"' not in page


@pytest.mark.parametrize("status", WAITING + FINAL)
def test_status_tells_the_status_and_nothing_else(client, make_product, status):
    # given an order in each status, keys in stock
    enable_sandbox()
    product = make_product()
    add_keys(product, ["ST-9"])
    order = create_order(client, product)
    Order.objects.filter(order_no=order["order_no"]).update(status=status)
    # when
    answer = client.get(f"/orders/{order['order_no']}/status?token={order['token']}")
    bare = client.get(f"/orders/{order['order_no']}/status")
    # then
    assert answer.json() == {"status": status} and answer["Cache-Control"] == "no-store"
    assert bare.status_code == 404
