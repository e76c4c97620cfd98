"""Two members of staff fulfil the same order at the same moment, each in a thread with its own
database connection: one wins, the other gets a clear Conflict, the buyer gets one delivery."""
from __future__ import annotations

import threading
from decimal import Decimal

import pytest
from django.db import connection
from django.test import Client

from kami.core.errors import Conflict
from kami.delivery.models import OutboxMessage
from kami.fulfilment.manual import order_fulfil_manually
from kami.orders.models import OrderKey
from kami.orders.services import order_create
from tests.sandbox_play import enable_sandbox, sandbox_notify

pytestmark = [pytest.mark.concurrency, pytest.mark.django_db(transaction=True)]


def test_a_second_concurrent_fulfilment_is_a_conflict(make_product, server_db):
    # given a paid manual order
    enable_sandbox()
    product = make_product(kind="manual", price=Decimal("5.00"))
    order, _ = order_create(product=product, quantity=1, email="b@example.com", gateway="sandbox")
    assert sandbox_notify(Client(), order_no=order.order_no, amount="5.00").content == b"ok"
    start, outcomes, lock = threading.Barrier(2), [], threading.Lock()

    def staff(name: str) -> None:
        try:
            start.wait()
            try:
                order_fulfil_manually(order_no=order.order_no, contents=[f"done by {name}"], actor=name)
                outcome = "fulfilled"
            except Conflict as exc:
                outcome = f"conflict: {exc}"
            with lock:
                outcomes.append(outcome)
        finally:
            connection.close()

    # when
    threads = [threading.Thread(target=staff, args=(n,)) for n in ("alice", "bob")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # then
    assert sorted(o.split(":")[0] for o in outcomes) == ["conflict", "fulfilled"]
    assert "is fulfilled" in next(o for o in outcomes if o.startswith("conflict"))
    assert OrderKey.objects.filter(order=order).count() == 1
    assert OutboxMessage.objects.filter(kind="order_keys").count() == 1
