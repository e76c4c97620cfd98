"""Idempotency-Key on every POST: a repeat gets the first answer and runs nothing again; the same
key with another request is refused; concurrent repeats (threads with their own connections)
run the work once and all get the first answer."""
from __future__ import annotations

import threading

import pytest
from django.db import connection

from kami.api.models import IdempotencyRecord
from kami.audit.models import AuditLog
from kami.delivery.models import OutboxMessage
from kami.stock.models import Key
from tests.api.conftest import Api, assert_problem, fulfilled_order


def test_a_repeat_gets_the_first_answer_and_imports_nothing_again(api_as, make_product):
    # given
    make_product("gift-10")
    api = api_as("stock")
    first = api.post("/stock/gift-10/keys", {"keys": ["A", "B"]}, key="import-1")
    # when
    again = api.post("/stock/gift-10/keys", {"keys": ["A", "B"]}, key="import-1")
    # then
    assert first.status_code == again.status_code == 200
    assert again.json() == first.json() and again.json()["imported"] == 2
    assert again["Idempotent-Replayed"] == "true" and not first.has_header("Idempotent-Replayed")
    assert Key.objects.count() == 2 and AuditLog.objects.filter(action="keys.import").count() == 1


def test_the_same_key_with_another_body_or_path_is_refused(api_as, make_product):
    # given
    make_product("gift-10")
    make_product("gift-20")
    api = api_as("stock")
    api.post("/stock/gift-10/keys", {"keys": ["A"]}, key="k")
    # when
    other_body = api.post("/stock/gift-10/keys", {"keys": ["B"]}, key="k")
    other_path = api.post("/stock/gift-20/keys", {"keys": ["A"]}, key="k")
    # then
    assert "use a new key" in assert_problem(other_body, 422, "idempotency-key-reused")["detail"]
    assert_problem(other_path, 422, "idempotency-key-reused")
    assert Key.objects.count() == 1


def test_keys_belong_to_their_token(make_token, make_product):
    # given
    make_product("gift-10")
    one, two = Api(make_token("stock")), Api(make_token("stock"))
    # when
    a = one.post("/stock/gift-10/keys", {"keys": ["A"]}, key="same")
    b = two.post("/stock/gift-10/keys", {"keys": ["B"]}, key="same")
    # then
    assert a.json()["imported"] == b.json()["imported"] == 1


def test_a_post_without_the_header_is_refused_and_runs_nothing(api_as, make_product):
    # given
    make_product("gift-10")
    # when
    response = api_as("stock").post("/stock/gift-10/keys", {"keys": ["A"]}, key=None)
    # then
    assert "Idempotency-Key" in assert_problem(response, 400, "idempotency-key-missing")["detail"]
    assert not Key.objects.exists() and not IdempotencyRecord.objects.exists()


def test_a_refused_first_request_is_the_answer_repeats_get(make_token, make_product):
    # given: an order that cannot be resent (never paid)
    api = Api(make_token("orders"))
    # when
    first = api.post("/orders/K404/resend", key="r")
    again = api.post("/orders/K404/resend", key="r")
    # then
    assert_problem(first, 404, "not-found")
    assert again.json() == first.json() and again["Idempotent-Replayed"] == "true"


@pytest.mark.concurrency
@pytest.mark.django_db(transaction=True)
def test_concurrent_repeats_resend_once_and_all_get_the_first_answer(make_token, make_product):
    # given
    order = fulfilled_order(make_product("gift-10"))
    secret = make_token("orders")
    answers, replayed, lock, barrier = [], [], threading.Lock(), threading.Barrier(6)

    def repeat():
        try:
            barrier.wait()
            response = Api(secret).post(f"/orders/{order.order_no}/resend", key="resend-once")
            with lock:
                answers.append((response.status_code, response.content))
                replayed.append(response.has_header("Idempotent-Replayed"))
        finally:
            connection.close()

    # when
    threads = [threading.Thread(target=repeat) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # then
    assert len(answers) == 6 and len(set(answers)) == 1 and answers[0][0] == 200
    assert sorted(replayed) == [False] + [True] * 5  # one ran; five got its answer
    assert OutboxMessage.objects.filter(dedupe_key__startswith=f"order_keys:{order.pk}:resend:").count() == 1
    assert AuditLog.objects.filter(action="order.resend_delivery").count() == 1


def test_answers_are_kept_a_day_then_the_key_starts_afresh(api_as, make_product):
    # given
    from datetime import timedelta

    from kami.core import clock

    make_product("gift-10")
    api = api_as("stock")
    api.post("/stock/gift-10/keys", {"keys": ["A"]}, key="daily")
    # when
    try:
        clock.travel(timedelta(hours=25))
        later = api.post("/stock/gift-10/keys", {"keys": ["B"]}, key="daily")
    finally:
        clock.travel(None)
    # then
    assert later.status_code == 200 and later.json()["imported"] == 1 and not later.has_header("Idempotent-Replayed")
    assert IdempotencyRecord.objects.count() == 1
