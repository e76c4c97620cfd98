"""The lean notify path (issue 9): the WSGI application sends notifications past the middleware
they do not need, a confirmed notification is one transaction with its raw row inside it, and
a confirm that rolls back still leaves the raw row."""
from __future__ import annotations

from urllib.parse import urlencode

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from kami.orders.models import Order
from kami.payments.models import Notification, Payment
from tests import sandbox_play
from tests.payments.epay_play import (enable_epay, last_notification, notify, nothing_delivered, paid_params,
                                      stocked_order)

pytestmark = pytest.mark.django_db(transaction=True)


def wsgi_post(path: str, body: bytes, **options) -> tuple[int, dict, bytes]:
    """A form-encoded notification (Epay's) through kami.wsgi.application."""
    return sandbox_play.wsgi_post(path, body, content_type="application/x-www-form-urlencoded", **options)


def test_a_notification_through_the_wsgi_application_is_confirmed_without_a_session(client, make_product):
    # given a pending order
    enable_epay()
    order = stocked_order(client, make_product)
    params = paid_params(order_no=order["order_no"], money=order["amount"])
    # when the gateway posts to the server's WSGI application
    status, headers, body = wsgi_post("/pay/epay/notify", urlencode(params).encode())
    # then it is confirmed, and answered with no cookie, but with the security headers
    assert (status, body) == (200, b"success")
    assert Order.objects.get(order_no=order["order_no"]).status == Order.Status.FULFILLED
    assert "Set-Cookie" not in headers and "Vary" not in headers, headers
    assert "Content-Security-Policy" in headers and headers.get("X-Content-Type-Options") == "nosniff", headers
    assert last_notification().result == "fulfilled"


def test_an_untrusted_forwarded_for_is_not_taken_as_the_sender_on_the_lean_path(client, make_product):
    # given a forged notification naming another address in X-Forwarded-For, from an untrusted peer
    enable_epay()
    # when
    status, _, _ = wsgi_post("/pay/epay/notify", b"out_trade_no=1&money=1.00&sign=00", remote_addr="203.0.113.9",
                             x_forwarded_for="198.51.100.1")
    # then it is refused and stored under the peer's own address
    row = last_notification()
    assert status == 400 and (row.result, row.remote_addr) == ("rejected", "203.0.113.9")


def test_an_unknown_gateway_is_a_plain_404_on_the_lean_path(db):
    # when
    status, _, _ = wsgi_post("/pay/nosuchgateway/notify", b"a=1")
    # then
    assert status == 404
    assert not Notification.objects.exists()


def test_a_confirmed_notification_is_written_once_inside_the_confirm_transaction(client, make_product):
    # given
    enable_epay()
    order = stocked_order(client, make_product)
    params = paid_params(order_no=order["order_no"], money=order["amount"])
    # when
    with CaptureQueriesContext(connection) as queries:
        response = notify(client, params, method="POST")
    # then one INSERT of the raw row, no UPDATE of it, and one transaction in all
    sql = [q["sql"] for q in queries.captured_queries]
    writes = [s for s in sql if "payments_notification" in s]
    assert response.content == b"success" and len(writes) == 1 and writes[0].startswith("INSERT"), writes
    commits = [s for s in sql if s.upper().startswith(("COMMIT", "RELEASE SAVEPOINT"))]
    assert len(commits) <= 1, commits


def _payments_refused(on: bool) -> None:
    """A real database failure inside the confirm: a trigger that refuses every payment row."""
    vendor = connection.vendor
    with connection.cursor() as cursor:
        if not on:
            cursor.execute("DROP TRIGGER IF EXISTS h9_refuse_payment" + (" ON payments_payment" if vendor == "postgresql" else ""))
            return
        if vendor == "postgresql":
            cursor.execute("CREATE OR REPLACE FUNCTION h9_refuse() RETURNS trigger LANGUAGE plpgsql AS "
                           "$$ BEGIN RAISE EXCEPTION 'payments refused by the test'; END $$")
            cursor.execute("CREATE TRIGGER h9_refuse_payment BEFORE INSERT ON payments_payment "
                           "FOR EACH ROW EXECUTE FUNCTION h9_refuse()")
        elif vendor == "mysql":
            cursor.execute("CREATE TRIGGER h9_refuse_payment BEFORE INSERT ON payments_payment FOR EACH ROW "
                           "SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'payments refused by the test'")
        else:
            cursor.execute("CREATE TRIGGER h9_refuse_payment BEFORE INSERT ON payments_payment "
                           "BEGIN SELECT RAISE(ABORT, 'payments refused by the test'); END")


def test_a_confirm_that_rolls_back_keeps_the_raw_notification_and_the_retry_applies_once(client, make_product):
    # given a pending order, and a database that refuses its payment row
    enable_epay()
    order = stocked_order(client, make_product)
    params = paid_params(order_no=order["order_no"], money=order["amount"])
    _payments_refused(True)
    try:
        # when the gateway notifies
        response = notify(client, params, method="POST")
    finally:
        _payments_refused(False)
    # then the gateway is asked to retry, nothing is applied, and the raw row is kept with the error
    row = last_notification()
    assert response.content != b"success"
    assert (row.verified, row.result, row.order_no) == (True, "error", order["order_no"])
    assert "payments refused by the test" in row.error and row.body
    assert nothing_delivered() and not Payment.objects.exists()
    assert Order.objects.get(order_no=order["order_no"]).status == Order.Status.PENDING
    # and when the gateway retries, the order is fulfilled exactly once
    assert notify(client, params, method="POST").content == b"success"
    assert notify(client, params, method="POST").content == b"success"
    assert Order.objects.get(order_no=order["order_no"]).status == Order.Status.FULFILLED
    assert Payment.objects.count() == 1
    assert list(Notification.objects.order_by("id").values_list("result", flat=True)) == ["error", "fulfilled", "duplicate"]


def _kill_backend() -> None:
    """End this thread's kept database session from another session, as a database restart
    or a failover does."""
    from django.db import connections

    other = connections.create_connection("default")
    try:
        with other.cursor() as cursor:
            if connection.vendor == "postgresql":
                cursor.execute("SELECT pg_terminate_backend(%s)", [connection.connection.info.backend_pid])
            else:
                cursor.execute(f"KILL CONNECTION {int(connection.connection.thread_id())}")
    finally:
        other.close()


def test_a_kept_connection_that_died_costs_the_gateway_one_retry_not_an_error(make_product):
    # given a notify path that keeps its connection and skips the per-request health check
    # (kami.api.lean.KeptConnectionsTrusted), with that connection's session ended meanwhile
    if connection.vendor == "sqlite":
        pytest.skip("SQLite has no server session to end")
    from kami.stock.models import Key
    from tests.factories import add_keys, make_orders
    from tests.sandbox_play import enable_sandbox, sandbox_notify_wsgi

    enable_sandbox()
    product = make_product()
    add_keys(product, ["KEPT-1", "KEPT-2"])
    first, second = make_orders(product, [1, 1])
    assert sandbox_notify_wsgi(order_no=first.order_no, amount=str(first.amount)) == (200, b"ok")
    assert connection.connection is not None  # kept for the next request
    _kill_backend()
    # when the next notification arrives, and the gateway sends it again as asked
    answers = [sandbox_notify_wsgi(order_no=second.order_no, amount=str(second.amount))
               for _ in range(2)]
    # then the first try is the gateway's "retry" (never a 500, nothing half done), and the retry
    # confirms the order on a new connection, its raw notification kept (the first try's row is
    # kept too when the dead session shows only at the confirm; with none reachable it cannot be)
    assert answers == [(400, b"fail"), (200, b"ok")]
    second.refresh_from_db()
    assert second.status == "fulfilled"
    assert Key.objects.filter(product=product, status="sold").count() == 2
    assert Notification.objects.filter(order_no=second.order_no, verified=True, result=Notification.Result.FULFILLED).count() == 1
