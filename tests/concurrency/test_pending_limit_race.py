"""The pending-order limit holds under a burst: 20 requests for one email (or from one IP) at
the same moment, each thread with its own connection, leave exactly the limit of unpaid orders —
the count and the insert happen under a named lock (kami.core.locks)."""
from __future__ import annotations

import threading
from collections import Counter
from decimal import Decimal

import pytest
from django.db import connection

from kami.core.errors import BadInput
from kami.orders.models import Order
from kami.orders.services import order_create
from tests.factories import add_keys

pytestmark = [pytest.mark.concurrency, pytest.mark.server_db, pytest.mark.django_db(transaction=True)]

BURST = 20


def burst(product, *, email_of, ip_of) -> Counter:
    start, outcomes, lock = threading.Barrier(BURST), Counter(), threading.Lock()

    def buyer(i: int) -> None:
        try:
            start.wait()
            try:
                order_create(product=product, quantity=1, email=email_of(i), gateway="sandbox", buyer_ip=ip_of(i))
                outcome = "ordered"
            except BadInput as exc:
                outcome = str(exc)
            except Exception as exc:  # anything else is a bug the test must show
                outcome = f"{type(exc).__name__}: {exc}"
            with lock:
                outcomes[outcome] += 1
        finally:
            connection.close()

    threads = [threading.Thread(target=buyer, args=(i,)) for i in range(BURST)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return outcomes


def test_one_email_gets_exactly_the_limit(server_db, make_product, settings):
    # given a limit of 3 unpaid orders per email
    settings.KAMI_PENDING_LIMIT_EMAIL, settings.KAMI_PENDING_LIMIT_IP = 3, 0
    product = make_product(price=Decimal("5.00"), max_qty=1)
    add_keys(product, ["PL-1"])
    # when 20 requests for one email (in mixed case) arrive at once from 20 addresses
    outcomes = burst(product, email_of=lambda i: "Same@Example.com" if i % 2 else "same@example.com",
                     ip_of=lambda i: f"10.0.0.{i + 1}")
    # then exactly 3 orders exist and the others were refused with the limit's message
    assert outcomes["ordered"] == 3, outcomes
    assert outcomes["too many unpaid orders: pay or wait for them to expire"] == BURST - 3, outcomes
    assert Order.objects.filter(email__iexact="same@example.com").count() == 3


def test_one_address_gets_exactly_the_limit(server_db, make_product, settings):
    settings.KAMI_PENDING_LIMIT_EMAIL, settings.KAMI_PENDING_LIMIT_IP = 0, 4
    product = make_product(price=Decimal("5.00"), max_qty=1)
    add_keys(product, ["PL-2"])
    outcomes = burst(product, email_of=lambda i: f"b{i}@example.com", ip_of=lambda i: "10.9.9.9")
    assert outcomes["ordered"] == 4, outcomes
    assert Order.objects.filter(buyer_ip="10.9.9.9").count() == 4
