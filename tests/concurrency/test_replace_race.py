"""Replacing keys from many threads at once, each with its own connection (PostgreSQL, MariaDB):
one replacement per key, no key handed out twice, and "sold out" exactly when stock runs dry."""
from __future__ import annotations

import threading
from collections import Counter

import pytest
from django.db import connection
from django.test import Client

from kami.core.errors import Conflict, SoldOut
from kami.fulfilment.replace import order_key_replace
from kami.orders.models import OrderEvent, OrderKey
from kami.stock.models import Key
from tests.factories import add_keys, make_orders
from tests.sandbox_play import enable_sandbox, sandbox_notify

pytestmark = [pytest.mark.concurrency, pytest.mark.django_db(transaction=True)]


def fulfilled_orders(product, count: int):
    enable_sandbox()
    orders = make_orders(product, [1] * count)
    client = Client()
    for order in orders:
        assert sandbox_notify(client, order_no=order.order_no, amount=str(order.amount)).content == b"ok"
    return orders


def at_once(calls) -> list:
    """Run each call in its own thread, released together; the result or exception of each."""
    barrier, results, lock = threading.Barrier(len(calls)), [], threading.Lock()

    def run(call):
        try:
            barrier.wait()
            outcome = call()
        except Exception as exc:  # noqa: BLE001 — the outcome under test
            outcome = exc
        finally:
            connection.close()
        with lock:
            results.append(outcome)

    threads = [threading.Thread(target=run, args=(c,)) for c in calls]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def assert_no_key_handed_out_twice(product):
    links = Counter(OrderKey.objects.filter(key__product=product).values_list("key_id", flat=True))
    assert max(links.values()) == 1
    assert Key.objects.filter(product=product, status="sold").count() == len(links)


def test_two_people_replacing_the_same_key_replace_it_once(make_product, server_db):
    # given: a fulfilled order and spare keys
    product = make_product()
    add_keys(product, [f"SAME-{i}" for i in range(6)])
    (order,) = fulfilled_orders(product, 1)
    key = OrderKey.objects.get(order=order).key_id
    # when
    results = at_once([lambda: order_key_replace(order_no=order.order_no, key_pk=key, reason="bad", actor=who)
                       for who in ("alice", "bob")])
    # then: one new key, one clear refusal
    replaced = [r for r in results if isinstance(r, Key)]
    refused = [r for r in results if isinstance(r, Conflict)]
    assert len(replaced) == 1 and len(refused) == 1, results
    assert "was already replaced" in str(refused[0])
    assert OrderEvent.objects.filter(order=order, kind="key_replaced").count() == 1
    assert Counter(Key.objects.filter(product=product).values_list("status", flat=True)) == {
        "sold": 1, "void": 1, "available": 4}
    assert_no_key_handed_out_twice(product)


def test_twenty_replacements_with_ten_keys_in_stock(make_product, server_db):
    # given: twenty fulfilled orders of one product, then ten spare keys
    product = make_product()
    add_keys(product, [f"SOLD-{i:02d}" for i in range(20)])
    orders = fulfilled_orders(product, 20)
    add_keys(product, [f"SPARE-{i:02d}" for i in range(10)])
    olds = {o.order_no: OrderKey.objects.get(order=o).key_id for o in orders}
    # when: every order's key is replaced at the same moment
    results = at_once([lambda no=no, key=key: order_key_replace(order_no=no, key_pk=key, reason="bad", actor="staff")
                       for no, key in olds.items()])
    # then
    kinds = Counter(type(r).__name__ for r in results)
    assert kinds == {"Key": 10, "SoldOut": 10}, results
    assert len({r.pk for r in results if isinstance(r, Key)}) == 10
    assert all("nothing was changed" in str(r) for r in results if isinstance(r, SoldOut))
    assert_no_key_handed_out_twice(product)
    statuses = Counter(Key.objects.filter(product=product).values_list("status", flat=True))
    assert statuses == {"sold": 20, "void": 10}
    unchanged = [no for no, key in olds.items() if OrderKey.objects.get(order__order_no=no).key_id == key]
    assert len(unchanged) == 10
    assert all(Key.objects.get(pk=olds[no]).status == "sold" for no in unchanged)
