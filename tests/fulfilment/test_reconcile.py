"""A lost notification is recovered by reconciliation: the sweep asks the gateway (a loopback
fake of the Epay site) about orders still pending and confirms the paid ones."""
from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import Client

from kami.fulfilment.backfill import sweep
from kami.orders.models import Order
from kami.payments.models import Notification
from tests.payments.conftest import clock_travel, fake_epay  # noqa: F401 (fixtures)
from tests.payments.epay_play import enable_epay, stocked_order
from tests.payments.test_epay_query import site_answer

pytestmark = pytest.mark.django_db(transaction=True)


def test_lost_notification_is_recovered_by_querying_the_gateway(make_product, fake_epay, clock_travel):
    # given an Epay order paid at the gateway whose notification never arrived
    enable_epay(url=fake_epay.url)
    paid = stocked_order(Client(), make_product)
    unpaid = stocked_order(Client(), make_product)
    fake_epay.orders[paid["order_no"]] = site_answer(paid["order_no"], money=paid["amount"], trade_no="EP-LOST-1")
    # when the sweep runs six minutes later, twice
    clock_travel(timedelta(minutes=6))
    first, second = sweep(), sweep()
    # then the paid order is fulfilled once, the unpaid one stays pending
    assert first["reconciled"] == 1 and second["reconciled"] == 0
    assert Order.objects.get(order_no=paid["order_no"]).status == "fulfilled"
    assert Order.objects.get(order_no=unpaid["order_no"]).status == "pending"
    row = Notification.objects.get(method="QUERY")
    assert (row.result, row.trade_no) == ("fulfilled", "EP-LOST-1")


def test_recent_orders_are_not_queried_yet(make_product, fake_epay):
    enable_epay(url=fake_epay.url)
    order = stocked_order(Client(), make_product)
    fake_epay.orders[order["order_no"]] = site_answer(order["order_no"], money=order["amount"])
    assert sweep()["reconciled"] == 0
    assert fake_epay.requests == []


def test_an_unsigned_answer_with_another_amount_is_flagged_not_fulfilled(make_product, fake_epay, clock_travel):
    # given the Epay site (whose query answers are unsigned) says an order was paid 0.01
    enable_epay(url=fake_epay.url)
    order = stocked_order(Client(), make_product)
    fake_epay.orders[order["order_no"]] = site_answer(order["order_no"], money="0.01", trade_no="EP-CHEAP-1")
    # when
    clock_travel(timedelta(minutes=6))
    sweep()
    # then no key leaves: a human looks at it
    assert Order.objects.get(order_no=order["order_no"]).status == "flagged"
    assert Notification.objects.get(method="QUERY").result == "flagged"
