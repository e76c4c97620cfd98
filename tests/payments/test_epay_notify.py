"""Epay notifications that are real: paid orders are fulfilled exactly once, however often and
however concurrently the site repeats itself, by GET or POST, with or without a trailing slash."""
from __future__ import annotations

import threading
from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.test import Client

from kami.delivery.models import OutboxMessage
from kami.orders.models import Order, OrderKey
from kami.payments.models import Notification
from kami.stock.models import Key
from tests.payments.epay_play import (add_keys, create_order, enable_epay, fixture, last_notification, notify,
                                      nothing_delivered, paid_params, payments_of, stocked_order)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("key_never_stored")]


@pytest.mark.parametrize("method", ["GET", "POST"])
@pytest.mark.parametrize("path", ["/pay/epay/notify", "/pay/epay/notify/"])
def test_paid_notification_fulfils_the_order_and_answers_success(client, make_product, method, path):
    # given
    enable_epay()
    order = stocked_order(client, make_product, keys=3, quantity=2)
    # when
    response = notify(client, paid_params(order_no=order["order_no"], money=order["amount"]), method=method, path=path)
    # then
    assert (response.status_code, response.content, response["Content-Type"]) == (200, b"success", "text/plain")
    detail = client.get(f"/api/v1/orders/{order['order_no']}", HTTP_X_ORDER_TOKEN=order["token"]).json()
    assert detail["status"] == "fulfilled"
    assert len(detail["keys"]) == 2
    row = last_notification()
    assert (row.result, row.verified, row.method, row.order_no) == ("fulfilled", True, method, order["order_no"])
    assert OutboxMessage.objects.filter(kind="order_keys").count() == 1


def test_recorded_get_notification_is_accepted_as_sent(client, make_product):
    # given: the shop configured like the recorded site, and an order with the recorded number
    sample = fixture("epay_paid_get")
    enable_epay(pid=sample["pid"], key=sample["key"])
    item = make_product(name=sample["product_name"], price=Decimal(sample["price"]))
    add_keys(item, ["REC-1"])
    order = create_order(client, item, quantity=sample["quantity"])
    Order.objects.filter(order_no=order["order_no"]).update(order_no=sample["params"]["out_trade_no"])
    # when: the query string is sent byte for byte
    response = notify(client, sample["query"])
    # then
    assert response.content == b"success"
    assert Order.objects.get(order_no=sample["params"]["out_trade_no"]).status == "fulfilled"
    assert last_notification().trade_no == sample["params"]["trade_no"]


def test_recorded_post_notification_is_accepted_as_sent(client, make_product):
    # given
    sample = fixture("epay_paid_post")
    enable_epay(pid=sample["pid"], key=sample["key"], type="wxpay")
    item = make_product(name=sample["product_name"], price=Decimal(sample["price"]))
    add_keys(item, ["REC-1", "REC-2", "REC-3"])
    order = create_order(client, item, quantity=sample["quantity"])
    Order.objects.filter(order_no=order["order_no"]).update(order_no=sample["params"]["out_trade_no"])
    # when
    response = notify(client, sample["body"], method="POST")
    # then
    assert response.content == b"success"
    fulfilled = Order.objects.get(order_no=sample["params"]["out_trade_no"])
    assert fulfilled.status == "fulfilled"
    assert OrderKey.objects.filter(order=fulfilled).count() == 2


def test_recorded_wait_buyer_pay_is_acknowledged_and_changes_nothing(client, make_product):
    # given
    sample = fixture("epay_wait_buyer_pay")
    enable_epay(pid=sample["pid"], key=sample["key"])
    item = make_product(price=Decimal(sample["price"]))
    add_keys(item, ["W-1"])
    order = create_order(client, item)
    Order.objects.filter(order_no=order["order_no"]).update(order_no=sample["params"]["out_trade_no"])
    # when
    response = notify(client, sample["query"])
    # then
    assert response.content == b"success"  # acknowledged, so the site stops repeating a non-event
    assert Order.objects.get(order_no=sample["params"]["out_trade_no"]).status == "pending"
    assert (last_notification().result, last_notification().verified) == ("ignored", True)
    assert nothing_delivered()


def test_same_notification_twenty_times_in_a_row_fulfils_once(client, make_product):
    # given
    enable_epay()
    order = stocked_order(client, make_product, keys=5)
    params = paid_params(order_no=order["order_no"], money=order["amount"])
    # when
    answers = [notify(client, params, method="GET" if i % 2 else "POST").content for i in range(20)]
    # then
    assert answers == [b"success"] * 20
    assert payments_of(order["order_no"]) == 1
    assert OrderKey.objects.count() == 1
    assert Key.objects.filter(status="sold").count() == 1
    assert OutboxMessage.objects.filter(kind="order_keys").count() == 1
    results = list(Notification.objects.order_by("id").values_list("result", flat=True))
    assert results == ["fulfilled"] + ["duplicate"] * 19


def test_same_notification_twenty_times_at_once_fulfils_once(client, make_product):
    # given: twenty copies released together, each on its own connection
    enable_epay()
    order = stocked_order(client, make_product, keys=5)
    params = paid_params(order_no=order["order_no"], money=order["amount"])
    start, answers = threading.Barrier(20), []

    def deliver(i: int) -> None:
        try:
            start.wait(timeout=30)
            response = notify(Client(), params, method="GET" if i % 2 else "POST")
            answers.append((response.status_code, response.content))
        finally:
            connection.close()

    threads = [threading.Thread(target=deliver, args=(i,)) for i in range(20)]
    # when
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    # then
    assert answers == [(200, b"success")] * 20
    assert Order.objects.get(order_no=order["order_no"]).status == "fulfilled"
    assert payments_of(order["order_no"]) == 1
    assert OrderKey.objects.count() == 1
    assert Key.objects.filter(status="sold").count() == 1
    assert OutboxMessage.objects.filter(kind="order_keys").count() == 1
    results = sorted(Notification.objects.values_list("result", flat=True))
    assert results == ["duplicate"] * 19 + ["fulfilled"]


def test_paid_after_the_order_expired_is_flagged_not_delivered(client, make_product, clock_travel, settings):
    # given: an order left unpaid past its TTL and the grace for late notifications
    enable_epay()
    order = stocked_order(client, make_product)
    clock_travel(timedelta(minutes=settings.KAMI_ORDER_TTL_MINUTES + 30))
    # when
    response = notify(client, paid_params(order_no=order["order_no"], money=order["amount"]))
    # then: acknowledged (the money arrived, a human decides), flagged, an alert queued
    assert response.content == b"success"
    row = Order.objects.get(order_no=order["order_no"])
    assert (row.status, row.flag_reason) == ("flagged", "paid_after_expiry")
    assert last_notification().result == "flagged"
    assert OutboxMessage.objects.filter(kind="admin_alert", payload__event="flagged").count() == 1
    assert nothing_delivered()


def test_a_second_trade_for_a_paid_order_is_flagged_as_paid_twice(client, make_product):
    # given: the order is fulfilled, then the buyer pays again (a new trade_no)
    enable_epay()
    order = stocked_order(client, make_product, keys=3)
    notify(client, paid_params(order_no=order["order_no"], money=order["amount"], trade_no="T-1"))
    # when
    response = notify(client, paid_params(order_no=order["order_no"], money=order["amount"], trade_no="T-2"))
    # then
    assert response.content == b"success"
    assert last_notification().result == "flagged"
    assert OrderKey.objects.count() == 1
    assert OutboxMessage.objects.filter(kind="admin_alert", payload__event="duplicate_payment").count() == 1
