"""A low-stock alert fires once each time available stock falls below the threshold: not once
per sale, and again after a restock brought it back up."""
from __future__ import annotations

import io

import pytest
from django.test import Client

from kami.delivery.models import OutboxMessage
from kami.stock.services import keys_import
from tests.factories import add_keys, make_orders
from tests.sandbox_play import enable_sandbox, sandbox_notify

pytestmark = pytest.mark.django_db(transaction=True)


def sell(client, product, count):
    for order in make_orders(product, [1] * count):
        assert sandbox_notify(client, order_no=order.order_no, amount=str(order.amount)).content == b"ok"


def low_stock_alerts():
    return OutboxMessage.objects.filter(kind="admin_alert", payload__event="low_stock").count()


def test_low_stock_alerts_once_per_episode(make_product):
    # given a product that alerts below 3 keys, with 5 in stock
    enable_sandbox()
    client = Client()
    product = make_product(low_stock=3)
    add_keys(product, [f"LOW-{i}" for i in range(5)])
    # when stock falls to 2, then to 1
    sell(client, product, 2)
    assert low_stock_alerts() == 0  # 3 left: not below
    sell(client, product, 1)
    sell(client, product, 1)
    # then one alert for this episode
    assert low_stock_alerts() == 1
    # when a restock lifts it back to the threshold and sales take it below again
    keys_import(product=product, stream=io.BytesIO(b"NEW-1\nNEW-2\nNEW-3\n"), source="test")
    sell(client, product, 2)
    # then a second alert
    assert low_stock_alerts() == 2
