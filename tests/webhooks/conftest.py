"""Webhook tests: a real receiver on loopback verifying with `standardwebhooks`, orders paid the
way the product is paid (order service, then a signed sandbox notification through the notify
endpoint), and the delivery worker run pass by pass, as tests/delivery runs it."""
from __future__ import annotations

import pytest

from kami.core import clock
from kami.orders.models import Order
from kami.orders.services import order_create
from kami.webhooks.services import endpoint_create
from tests.factories import add_keys
from tests.sandbox_play import enable_sandbox, sandbox_notify
from tests.webhooks.receiver import Receiver

ALL = ["order.paid", "order.fulfilled", "order.awaiting_stock", "order.refunded", "order.flagged", "stock.low",
       "delivery.failed"]


@pytest.fixture(autouse=True)
def real_time():
    clock.travel(None)
    yield
    clock.travel(None)


@pytest.fixture(autouse=True)
def short_retries(settings):
    """Retries seconds apart instead of days (the shipped schedule has its own test)."""
    settings.KAMI_DELIVERY_BACKOFF_BY_CHANNEL = {"merchant_webhook": [2, 2, 2, 2, 2, 2, 2, 2]}


@pytest.fixture
def receiver(settings):
    """Started without secrets; `hook` gives it the endpoint's. It listens on loopback, which Kami
    refuses unless the operator opts out (kami.webhooks.egress): the opt-out is on while it runs."""
    settings.KAMI_WEBHOOK_ALLOW_PRIVATE = True
    fake = Receiver().start()
    yield fake
    fake.stop()


@pytest.fixture
def hook(receiver):
    """An endpoint at the receiver for `events` (default: all); the receiver knows its secret."""

    def make(events=None, **fields):
        made = endpoint_create(url=fields.pop("url", receiver.url), events=events or ALL, actor="test", **fields)
        receiver.secrets.append(made.secret)
        return made

    return make


@pytest.fixture
def pay(client, make_product):
    """Pay `order`, or a new order for `product` (made with `keys` when not given), through the notify endpoint."""
    enable_sandbox()

    def make(*, product=None, keys=("AAAA-1111",), quantity=None, order=None):
        if order is None and product is None:
            product = make_product(name="Steam Wallet 100")
            add_keys(product, keys)
        order = order or order_create(product=product, quantity=quantity or max(len(keys), 1),
                                      email="buyer@example.com", gateway="sandbox")[0]
        assert sandbox_notify(client, order_no=order.order_no, amount=str(order.amount)).status_code == 200
        return Order.objects.get(pk=order.pk)

    return make
