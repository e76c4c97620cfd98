"""Per gateway with an API, end to end through the services: a payment whose notification was
lost is confirmed by reconciliation, and refunding it goes through the gateway and revokes the
keys. The gateway is a loopback fake that signs like the real one."""
from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import Client

from kami.core import clock
from kami.fulfilment.reconcile import reconcile_pending
from kami.fulfilment.refund import order_refund
from kami.orders.models import Order, OrderKey
from kami.stock.models import Key
from tests.payments.alipay_play import FakeAlipay, enable_alipay
from tests.payments.alipay_play import stocked_order as alipay_order
from tests.payments.paypal_play import enable_paypal, fake_paypal, paypal_order  # noqa: F401 (fixture)
from tests.payments.stripe_play import enable_stripe, fake_stripe, stripe_order  # noqa: F401 (fixture)
from tests.payments.wechat_play import FakeWeChatPay, enable_wechatpay, transaction
from tests.payments.wechat_play import stocked_order as wechat_order

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def later():
    """Moves Kami's clock six minutes on when called: past the reconciliation delay, inside the
    payment window. Back to real time after the test."""
    try:
        yield lambda: clock.travel(timedelta(minutes=6))
    finally:
        clock.travel(None)


def alipay_paid(make_product):
    fake = FakeAlipay().start()
    enable_alipay(gateway_url=fake.url)
    order = alipay_order(Client(), make_product)
    fake.trades[order["order_no"]] = {"out_trade_no": order["order_no"], "trade_no": "2026112722009999",
                                      "trade_status": "TRADE_SUCCESS", "total_amount": order["amount"]}
    return fake, order


def wechat_paid(make_product):
    fake = FakeWeChatPay().start()
    enable_wechatpay(api_base=fake.url)
    order = wechat_order(Client(), make_product)
    fake.trades[order["order_no"]] = transaction(order_no=order["order_no"], total=2990, transaction_id="4200009")
    return fake, order


def settle(order: dict, later):
    """Six minutes on: reconcile, then refund; return the order row, the outcome, its keys' statuses."""
    later()
    confirmed = reconcile_pending()
    row = Order.objects.get(order_no=order["order_no"])
    assert (confirmed, row.status) == (1, "fulfilled")
    sold = list(OrderKey.objects.filter(order=row).values_list("key_id", flat=True))
    outcome = order_refund(order_no=row.order_no, actor="test")
    row.refresh_from_db()
    return row, outcome, set(Key.objects.filter(id__in=sold).values_list("status", flat=True))


@pytest.mark.parametrize("play", [alipay_paid, wechat_paid], ids=["alipay", "wechatpay"])
def test_rsa_gateways_recover_a_lost_notification_and_refund(make_product, later, play):
    fake, order = play(make_product)
    try:
        row, outcome, key_statuses = settle(order, later)
    finally:
        fake.stop()
    assert row.status == "refunded" and not outcome.manual and key_statuses == {"void"}
    assert len(fake.refunds) == 1


def test_stripe_recovers_a_lost_notification_and_refunds(make_product, later, fake_stripe):  # noqa: F811
    enable_stripe(fake_stripe)
    order = stripe_order(Client(), make_product)
    fake_stripe.pay(Order.objects.get(order_no=order["order_no"]).gateway_ref)
    row, outcome, key_statuses = settle(order, later)
    assert row.status == "refunded" and not outcome.manual and key_statuses == {"void"}
    assert len(fake_stripe.refunds) == 1


def test_paypal_recovers_a_lost_approval_and_refunds(make_product, later, fake_paypal):  # noqa: F811
    enable_paypal(fake_paypal)
    order = paypal_order(Client(), make_product)
    fake_paypal.approve(Order.objects.get(order_no=order["order_no"]).gateway_ref)
    row, outcome, key_statuses = settle(order, later)
    assert row.status == "refunded" and not outcome.manual and key_statuses == {"void"}
    assert len(fake_paypal.refunds) == 1
