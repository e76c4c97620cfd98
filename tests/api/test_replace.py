"""Replacing a key over the merchant API: the back office's own service (kami.fulfilment.replace,
its locks and checks), audited under the token's name, once per Idempotency-Key."""
from __future__ import annotations

import threading

import pytest
from django.db import connection

from kami.audit.models import AuditLog
from kami.delivery.models import OutboxMessage
from kami.orders.models import OrderKey
from kami.stock.models import Key
from tests.api.conftest import Api, assert_problem, fulfilled_order
from tests.factories import add_keys


def test_replace_swaps_the_key_voids_the_old_one_and_emails_the_buyer(make_token, make_product):
    # given
    product = make_product("gift-10")
    order = fulfilled_order(product, keys=["BAD-KEY"])
    old = OrderKey.objects.get(order=order).key
    add_keys(product, ["GOOD-KEY"])
    api = Api(make_token("orders", name="desk"))
    # when
    response = api.post(f"/orders/{order.order_no}/keys/{old.pk}/replace", {"reason": "buyer says used"})
    # then
    assert response.status_code == 200, response.content
    body = response.json()
    new = Key.objects.get(pk=body["key"]["key_id"])
    assert body == {"order_no": order.order_no, "replaced_key_id": old.pk,
                    "key": {"key_id": new.pk, "fingerprint": new.fingerprint[:12], "status": "sold"}}
    assert b"GOOD-KEY" not in response.content and b"BAD-KEY" not in response.content
    old.refresh_from_db()
    assert old.status == Key.Status.VOID and OrderKey.objects.get(order=order).key_id == new.pk
    assert AuditLog.objects.get(action="order.key_replace").actor == "api:desk"
    assert OutboxMessage.objects.filter(kind="key_replaced").count() == 1


def test_a_repeated_replace_answers_the_same_and_replaces_once(api_as, make_product):
    # given
    product = make_product("gift-10")
    order = fulfilled_order(product, keys=["BAD-KEY"])
    old = OrderKey.objects.get(order=order).key
    add_keys(product, ["GOOD-1", "GOOD-2"])
    api = api_as("orders")
    path = f"/orders/{order.order_no}/keys/{old.pk}/replace"
    first = api.post(path, {"reason": "used"}, key="swap-1")
    # when
    again = api.post(path, {"reason": "used"}, key="swap-1")
    other = api.post(path, {"reason": "another reason"}, key="swap-1")
    # then
    assert first.status_code == again.status_code == 200 and again.json() == first.json()
    assert again["Idempotent-Replayed"] == "true"
    assert Key.objects.filter(product=product, status=Key.Status.AVAILABLE).count() == 1
    assert AuditLog.objects.filter(action="order.key_replace").count() == 1
    assert_problem(other, 422, "idempotency-key-reused")


def test_replace_refusals_name_the_problem_and_change_nothing(api_as, make_product):
    # given
    product = make_product("gift-10")
    order = fulfilled_order(product, keys=["BAD-KEY"])
    old = OrderKey.objects.get(order=order).key
    api = api_as("orders")
    path = f"/orders/{order.order_no}/keys/{old.pk}/replace"
    # when / then
    sold_out = assert_problem(api.post(path, {"reason": "used"}), 409, "conflict")
    assert "no key in stock" in sold_out["detail"]
    not_there = assert_problem(api.post(f"/orders/{order.order_no}/keys/{old.pk + 999}/replace", {"reason": "x"}),
                               409, "conflict")
    assert "is not on order" in not_there["detail"]
    assert_problem(api.post(f"/orders/K-NONE/keys/{old.pk}/replace", {"reason": "x"}), 404, "not-found")
    assert "reason" in assert_problem(api.post(path, {"reason": "  "}), 422, "invalid")["detail"]
    old.refresh_from_db()
    assert old.status == Key.Status.SOLD and not AuditLog.objects.filter(action="order.key_replace").exists()


@pytest.mark.concurrency
@pytest.mark.django_db(transaction=True)
def test_concurrent_repeats_replace_once_and_all_get_the_first_answer(make_token, make_product):
    # given
    product = make_product("gift-10")
    order = fulfilled_order(product, keys=["BAD-KEY"])
    old = OrderKey.objects.get(order=order).key
    add_keys(product, ["GOOD-1", "GOOD-2", "GOOD-3"])
    secret = make_token("orders")
    answers, lock, barrier = [], threading.Lock(), threading.Barrier(4)

    def repeat():
        try:
            barrier.wait()
            response = Api(secret).post(f"/orders/{order.order_no}/keys/{old.pk}/replace", {"reason": "used"},
                                        key="swap-once")
            with lock:
                answers.append((response.status_code, response.content))
        finally:
            connection.close()

    # when
    threads = [threading.Thread(target=repeat) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # then: one replacement; every caller got its answer
    assert len(answers) == 4 and len(set(answers)) == 1 and answers[0][0] == 200
    assert Key.objects.filter(product=product, status=Key.Status.AVAILABLE).count() == 2
    assert AuditLog.objects.filter(action="order.key_replace").count() == 1
