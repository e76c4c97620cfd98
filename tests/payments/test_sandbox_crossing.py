"""The sandbox never settles another gateway's order, and another gateway never settles a
sandbox order (issue 16): a free simulated payment must not pay for real goods. A switch
between two real gateways stays allowed and recorded."""
from __future__ import annotations

import pytest

from kami.fulfilment.confirm import sandbox_crossing
from kami.orders.models import Order
from kami.payments.models import Payment
from tests.payments.epay_play import (add_keys, create_order, enable_epay, last_notification, nothing_delivered, notify,
                                      paid_params)
from tests.sandbox_play import enable_sandbox, sandbox_notify

pytestmark = pytest.mark.django_db(transaction=True)


def stocked(make_product):
    item = make_product()
    add_keys(item, [f"X-{item.slug}-{i}" for i in range(2)])
    return item


def unchanged(order_no: str) -> None:
    assert Order.objects.get(order_no=order_no).status == Order.Status.PENDING
    assert not Payment.objects.filter(order__order_no=order_no).exists()
    assert last_notification().result == "rejected"
    assert nothing_delivered()


def test_a_sandbox_notification_cannot_pay_an_epay_order(client, make_product):
    # given both gateways live, and an order the buyer created to pay through Epay
    enable_epay()
    enable_sandbox()
    order = create_order(client, stocked(make_product), gateway="epay")
    # when the sandbox (correctly signed) says it was paid
    sandbox_notify(client, order_no=order["order_no"], amount=order["amount"])
    # then nothing is paid, sold or sent
    unchanged(order["order_no"])


def test_an_epay_notification_cannot_pay_a_sandbox_order(client, make_product):
    # given
    enable_epay()
    enable_sandbox()
    order = create_order(client, stocked(make_product), gateway="sandbox")
    # when
    notify(client, paid_params(order_no=order["order_no"], money=order["amount"]))
    # then
    unchanged(order["order_no"])


def test_only_switches_involving_the_sandbox_are_refused():
    # a buyer may still pay an Epay order through Alipay (recorded as gateway_switched)
    assert not sandbox_crossing(paid_with="alipay", chosen="epay")
    assert not sandbox_crossing(paid_with="sandbox", chosen="sandbox")
    assert sandbox_crossing(paid_with="sandbox", chosen="epay")
    assert sandbox_crossing(paid_with="stripe", chosen="sandbox")
