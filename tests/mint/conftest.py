"""Keys minted on demand: a dynamic product whose mint URL is a loopback fake merchant verifying
our signatures with `standardwebhooks`, orders paid through the sandbox notify endpoint, the
delivery worker run pass by pass (tests/webhooks does the same), and a real SMTP server."""
from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest

from kami.core import clock
from kami.delivery.models import OutboxMessage
from kami.delivery.worker import run_once
from kami.fulfilment.mint.config import product_mint_set
from kami.orders.models import Order
from kami.orders.services import order_create
from tests.delivery.conftest import smtp  # noqa: F401 (the real SMTP server fixture)
from tests.mint.merchant import Merchant
from tests.sandbox_play import enable_sandbox, sandbox_notify


@pytest.fixture(autouse=True)
def real_time():
    clock.travel(None)
    _travelled[0] = timedelta(0)
    yield
    clock.travel(None)


@pytest.fixture(autouse=True)
def quick(settings):
    """Retries seconds apart and a short wait for an answer (the shipped values have their own test)."""
    settings.KAMI_DELIVERY_BACKOFF_BY_CHANNEL = {**settings.KAMI_DELIVERY_BACKOFF_BY_CHANNEL, "mint": [2, 2, 2]}
    settings.KAMI_MINT_TIMEOUT_SECONDS = 0.5


@pytest.fixture
def merchant():
    fake = Merchant().start()
    yield fake
    fake.stop()


@pytest.fixture
def dynamic(make_product, merchant):
    """A dynamic product minted by the fake merchant, which knows the signing secret."""
    product = make_product("game-card", name="Game card", kind="dynamic", price=Decimal("10.00"), max_qty=5)
    merchant.secret = product_mint_set(product=product, url=merchant.url, actor="test").secret
    product.refresh_from_db()
    return product


@pytest.fixture
def pay(client):
    """A new order for `product`, paid through the notify endpoint; the order, reloaded."""
    enable_sandbox()

    def make(product, *, quantity=1, email="buyer@example.com"):
        order = order_create(product=product, quantity=quantity, email=email, gateway="sandbox")[0]
        assert sandbox_notify(client, order_no=order.order_no, amount=str(order.amount)).content == b"ok"
        return Order.objects.get(pk=order.pk)

    return make


def mint_row() -> OutboxMessage:
    return OutboxMessage.objects.get(kind="mint_keys")


_travelled = [timedelta(0)]


def later(seconds: int = 3) -> None:
    """Move the clock past a retry's wait (the quick schedule's steps are 2 s)."""
    _travelled[0] += timedelta(seconds=seconds)
    clock.travel(_travelled[0])


def work() -> int:
    return run_once("test-worker")
