"""The event-loop edge (kami/asgi.py, `kami serve --server uvicorn`): a verified payment is
confirmed on the loop through the group commit (kami/fulfilment/batch_loop.py), everything else
goes the WSGI way, and both answer alike. Requests go through the ASGI application itself
(httpx's ASGI transport), on the test's own loop: Django refuses a database call made on a
running loop, so these tests also prove that the loop path makes none."""
from __future__ import annotations

import asyncio

import httpx
import pytest
from django.db import connection
from django.test import override_settings

import kami.asgi
from kami.asgi import Application
from kami.fulfilment.batch import BATCHER
from kami.orders.models import Order
from kami.payments.models import Notification, Payment
from kami.payments.registry import gateway_get
from kami.stock.models import Key
from tests import sandbox_play
from tests.factories import add_keys, make_orders
from tests.fulfilment.test_notify_lean import _payments_refused

pytestmark = pytest.mark.django_db(transaction=True)
PEER = ("203.0.113.9", 40000)


@pytest.fixture
def shop(make_product):
    """A stocked product, the sandbox enabled and in this process's gateway cache (what the loop reads)."""
    with override_settings(KAMI_GATEWAY_CACHE_SECONDS=60):
        sandbox_play.enable_sandbox()
        gateway_get("sandbox")  # in autocommit: cached
        product = make_product()
        add_keys(product, [f"LOOP-{i}" for i in range(40)])
        yield product


@pytest.fixture
def taken_on_loop(monkeypatch) -> list:
    """The notifications the loop confirmed itself (notification_ready gave it a payment)."""
    taken = []
    ready = kami.asgi.notification_ready

    def spy(**kwargs):
        result = ready(**kwargs)
        if result is not None:
            taken.append(result.notice.order_no)
        return result

    monkeypatch.setattr(kami.asgi, "notification_ready", spy)
    return taken


def _signed(order: Order, *, trade_no: str | None = None, amount: str | None = None, status: str = "paid"):
    gateway = gateway_get("sandbox")
    body = gateway.notification_body(order_no=order.order_no, trade_no=trade_no or f"T-{order.order_no}",
                                     amount=amount or str(order.amount), currency=order.currency, status=status)
    return body, gateway.sign(body)


async def _post(client: httpx.AsyncClient, body: bytes, signature: str, **headers: str) -> httpx.Response:
    return await client.post("/pay/sandbox/notify", content=body, headers={
        "Content-Type": "application/json", "X-Sandbox-Signature": signature, **headers})


def _run(requests):
    """Run `requests(client)` against a fresh Application on a new loop; its answer."""
    app = Application(threads=4)

    async def go():
        transport = httpx.ASGITransport(app=app, client=PEER)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            return await requests(client)
    try:
        return asyncio.run(go())
    finally:
        app.close()


def test_a_payment_is_confirmed_on_the_loop_and_answered_as_the_wsgi_path_answers(shop, taken_on_loop):
    # given a pending order, and a sender that claims another address (an untrusted peer)
    order, twin = make_orders(shop, [1, 1])
    body, signature = _signed(order)
    # when the gateway notifies through the loop
    response = _run(lambda client: _post(client, body, signature, **{"X-Request-ID": "req-loop-0001",
                                                                      "X-Forwarded-For": "198.51.100.1"}))
    # then the loop confirmed it: fulfilled, one key, its raw row written in the confirm, under the peer's address
    assert (response.status_code, response.content) == (200, b"ok")
    assert taken_on_loop == [order.order_no]
    assert Order.objects.get(pk=order.pk).status == Order.Status.FULFILLED
    assert Key.objects.filter(status="sold").count() == 1
    row = Notification.objects.get()
    assert (row.result, row.verified, row.remote_addr, row.order_no) == ("fulfilled", True, PEER[0], order.order_no)
    # and the answer carries what the WSGI path's does: the request id, the security headers,
    # and the raw row stores the headers under the same names
    assert response.headers["X-Request-ID"] == "req-loop-0001"
    twin_body, twin_signature = _signed(twin)
    status, wsgi_headers, answer = sandbox_play.wsgi_post("/pay/sandbox/notify", twin_body, remote_addr=PEER[0],
                                                          x_sandbox_signature=twin_signature)
    assert (status, answer) == (200, b"ok")
    same = {"Content-Type", "Content-Security-Policy", "X-Content-Type-Options", "Referrer-Policy",
            "Cross-Origin-Opener-Policy", "Permissions-Policy"}
    assert {k: v for k, v in wsgi_headers.items() if k in same} == {k: response.headers.get(k) for k in same
                                                                    if k in wsgi_headers}
    # (the sender's X-Forwarded-For dropped, as ForwardedHeadersMiddleware drops it from an untrusted peer)
    assert set(row.headers) == {"Content-Type", "User-Agent"}, row.headers


def test_what_the_loop_does_not_confirm_goes_the_wsgi_way(shop, taken_on_loop):
    # given a pending order
    order = make_orders(shop, [1])[0]
    body, signature = _signed(order)
    unpaid, unpaid_signature = _signed(order, trade_no="T-WAIT", status="pending")

    async def requests(client):
        return [await _post(client, body, "0" * 64),  # forged
                await _post(client, unpaid, unpaid_signature),  # verified, not a payment
                await client.post("/pay/nosuchgateway/notify", content=b"{}"),
                await client.post("/pay/sandbox/notify", content=b"x", headers={"Content-Length": str(10**10)}),
                await client.get("/healthz")]

    # when each reaches the loop
    forged, waiting, unknown, huge, health = _run(requests)
    # then each has the WSGI path's answer and row, and the loop confirmed none of them
    assert forged.status_code == 400 and waiting.content == b"ok" and unknown.status_code == 404
    assert huge.status_code == 413 and health.status_code == 200
    assert taken_on_loop == []
    assert sorted(Notification.objects.values_list("result", flat=True)) == ["ignored", "rejected"]
    assert Order.objects.get(pk=order.pk).status == Order.Status.PENDING


def test_payments_that_arrive_together_on_the_loop_are_confirmed_together_each_once(shop, taken_on_loop):
    if connection.vendor == "sqlite":
        pytest.skip("group commit runs on PostgreSQL and MariaDB; SQLite confirms each alone (covered above)")
    # given 25 pending orders: 24 paid, one of them notified twice, and one paid with the wrong money
    orders = make_orders(shop, [1] * 25)
    notices = [_signed(order) for order in orders[:24]]
    notices.append(notices[0])
    notices.append(_signed(orders[24], amount="0.01"))
    BATCHER.sizes.clear()
    # when they all arrive at once
    responses = _run(lambda client: asyncio.gather(*(_post(client, body, sig) for body, sig in notices)))
    # then every one is acknowledged, each order fulfilled once with its own key, and they shared batches
    assert [r.status_code for r in responses] == [200] * 26
    assert Order.objects.filter(status=Order.Status.FULFILLED).count() == 24
    assert Order.objects.get(pk=orders[24].pk).status == Order.Status.FLAGGED
    assert Payment.objects.filter(order__status=Order.Status.FULFILLED).count() == 24
    assert Key.objects.filter(status="sold").count() == 24
    results = sorted(Notification.objects.values_list("result", flat=True))
    assert results == ["duplicate"] + ["flagged"] + ["fulfilled"] * 24, results
    assert max(BATCHER.sizes) > 1, BATCHER.sizes
    assert len(taken_on_loop) == 26


def test_a_confirm_that_fails_on_the_loop_keeps_the_raw_row_and_asks_for_a_retry(shop, taken_on_loop):
    # given a pending order, and a database that refuses its payment row
    order = make_orders(shop, [1])[0]
    body, signature = _signed(order)
    _payments_refused(True)
    try:
        # when the gateway notifies through the loop
        failed = _run(lambda client: _post(client, body, signature))
    finally:
        _payments_refused(False)
    # then it is asked to retry, and the raw row is kept with the error
    row = Notification.objects.get()
    assert failed.content != b"ok" and (row.result, row.verified) == ("error", True)
    assert "payments refused by the test" in row.error
    # and the retry is applied once
    again = _run(lambda client: _post(client, body, signature))
    assert again.content == b"ok" and Payment.objects.count() == 1
    assert Order.objects.get(pk=order.pk).status == Order.Status.FULFILLED
