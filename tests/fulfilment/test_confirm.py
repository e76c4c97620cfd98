"""Confirm payment end to end through the notify endpoint, on whichever database the run uses."""
from __future__ import annotations

import pytest

from kami.delivery.models import OutboxMessage
from kami.orders.models import Order, OrderKey
from kami.payments.models import Notification, Payment
from kami.stock.models import Key
from tests.sandbox_play import enable_sandbox, sandbox_notify
from tests.factories import add_keys  # noqa: F401 (re-exported for the tests here)




def create_order(client, product, quantity=1, email="buyer@example.com"):
    response = client.post("/api/v1/orders", {"product": product.slug, "quantity": quantity, "email": email,
                                              "gateway": "sandbox"}, content_type="application/json")
    assert response.status_code == 201, response.content
    return response.json()


@pytest.mark.django_db(transaction=True)
def test_paid_notification_delivers_keys_once(client, make_product):
    # given
    enable_sandbox()
    product = make_product()
    add_keys(product, ["AAAA-1111", "BBBB-2222", "CCCC-3333"])
    order = create_order(client, product, quantity=2)
    # when
    first = sandbox_notify(client, order_no=order["order_no"], amount=order["amount"])
    again = sandbox_notify(client, order_no=order["order_no"], amount=order["amount"])
    # then
    assert first.status_code == again.status_code == 200
    assert first.content == again.content == b"ok"
    detail = client.get(f"/api/v1/orders/{order['order_no']}", HTTP_X_ORDER_TOKEN=order["token"]).json()
    assert detail["status"] == "fulfilled"
    assert detail["keys"] == ["AAAA-1111", "BBBB-2222"]
    assert Payment.objects.count() == 1
    assert OutboxMessage.objects.filter(kind="order_keys").count() == 1
    assert list(Notification.objects.values_list("result", flat=True).order_by("id")) == ["fulfilled", "duplicate"]
    assert Key.objects.filter(status="available").count() == 1


@pytest.mark.django_db(transaction=True)
def test_short_stock_parks_order_without_partial_fulfilment(client, make_product):
    enable_sandbox()
    product = make_product()
    add_keys(product, ["ONLY-ONE"])
    order = create_order(client, product, quantity=1)
    add_keys(product, [])
    Key.objects.update(status="void")  # stock vanishes between order and payment
    sandbox_notify(client, order_no=order["order_no"], amount=order["amount"])
    row = Order.objects.get(order_no=order["order_no"])
    assert row.status == "awaiting_stock"
    assert not OrderKey.objects.filter(order=row).exists()
    assert OutboxMessage.objects.filter(kind="admin_alert", payload__event="awaiting_stock").count() == 1


@pytest.mark.django_db(transaction=True)
def test_wrong_token_and_unknown_order_look_the_same(client, make_product):
    enable_sandbox()
    product = make_product()
    add_keys(product, ["K-1"])
    order = create_order(client, product)
    wrong = client.get(f"/api/v1/orders/{order['order_no']}", HTTP_X_ORDER_TOKEN="nope")
    unknown = client.get("/api/v1/orders/999999", HTTP_X_ORDER_TOKEN=order["token"])
    assert wrong.status_code == unknown.status_code == 404
    assert wrong.content == unknown.content
