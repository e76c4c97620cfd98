"""Group commit (kami/fulfilment/batch.py, PostgreSQL and MariaDB): notifications that queue while
a confirm commits are confirmed together in one transaction, each with its own outcome and
acknowledgement; a batch that fails runs its members again alone, and no raw notification is
lost. The notifications are real requests from threads with their own connections; a plug (a
first notification held inside its transaction by a lock the test owns: an advisory lock on
PostgreSQL, a named lock (GET_LOCK) on MariaDB, taken by a trigger) makes the rest queue behind
it, and the test lets it go once they all wait."""
from __future__ import annotations

import threading
import time

import pytest
from django.db import connection, connections, transaction
from django.test import Client

from kami.core import clock
from kami.delivery.models import OutboxMessage
from kami.fulfilment.batch import BATCHER, _rows_write
from kami.orders.models import Order
from kami.payments.models import Notification, Payment
from kami.stock.models import Key
from tests.factories import add_keys, make_orders
from tests.sandbox_play import enable_sandbox, sandbox_notify

pytestmark = pytest.mark.django_db(transaction=True)
PLUG_LOCK = 4242


@pytest.fixture(autouse=True)
def _server_engine():
    if connection.vendor == "sqlite":
        pytest.skip("group commit runs on PostgreSQL and MariaDB; SQLite confirms one notification per transaction")


def _send(jobs: dict, results: dict) -> list[threading.Thread]:
    """Each job (name → notify kwargs) from its own thread, client and connection."""
    def one(name, kwargs):
        try:
            response = sandbox_notify(Client(), **kwargs)
            results[name] = (response.status_code, response.content)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=one, args=(name, kwargs)) for name, kwargs in jobs.items()]
    for t in threads:
        t.start()
    return threads


def _wait_for(check, what: str, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


# The test's SQL per engine: a trigger that holds a PLUG-… notification's confirm on the test's lock,
# taking and letting go of that lock, counting the sessions that wait for it, a trigger that refuses
# one trade's payment row, and dropping the triggers.
_SQL = {
    "postgresql": {
        "plug": ["CREATE OR REPLACE FUNCTION kami_test_plug() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                 f"IF NEW.trade_no LIKE 'PLUG-%%' THEN PERFORM pg_advisory_xact_lock({PLUG_LOCK}); END IF; "
                 "RETURN NEW; END $$",
                 "CREATE TRIGGER kami_test_plug BEFORE INSERT ON payments_notification "
                 "FOR EACH ROW EXECUTE FUNCTION kami_test_plug()"],
        "hold": f"SELECT pg_advisory_lock({PLUG_LOCK})",
        "let_go": f"SELECT pg_advisory_unlock({PLUG_LOCK})",
        "waiting": "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted",
        "refuse": ["CREATE OR REPLACE FUNCTION kami_test_refuse() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                   "IF NEW.trade_no = '{trade_no}' THEN RAISE EXCEPTION 'payment refused by the test'; END IF; "
                   "RETURN NEW; END $$",
                   "CREATE TRIGGER kami_test_refuse BEFORE INSERT ON payments_payment "
                   "FOR EACH ROW EXECUTE FUNCTION kami_test_refuse()"],
        "drop": "DROP TRIGGER IF EXISTS {name} ON {table}",
    },
    "mysql": {  # a named lock is the session's, not the transaction's: the plug's is let go when its connection closes
        "plug": ["CREATE TRIGGER kami_test_plug BEFORE INSERT ON payments_notification FOR EACH ROW "
                 f"BEGIN IF NEW.trade_no LIKE 'PLUG-%' THEN DO GET_LOCK('kami_test_plug_{PLUG_LOCK}', 120); END IF; END"],
        "hold": f"DO GET_LOCK('kami_test_plug_{PLUG_LOCK}', 10)",
        "let_go": f"DO RELEASE_LOCK('kami_test_plug_{PLUG_LOCK}')",
        "waiting": "SELECT count(*) FROM information_schema.processlist WHERE state = 'User lock' AND db = DATABASE()",
        "refuse": ["CREATE TRIGGER kami_test_refuse BEFORE INSERT ON payments_payment FOR EACH ROW "
                   "BEGIN IF NEW.trade_no = '{trade_no}' THEN "
                   "SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'payment refused by the test'; END IF; END"],
        "drop": "DROP TRIGGER IF EXISTS {name}",
    },
}


def _sql(what: str):
    return _SQL[connection.vendor][what]


def _batch_behind_plug(plug_order, jobs: dict, queued: int) -> dict:
    """Send the plug, then `jobs` while it is held; let it go once `queued` of them wait in the batcher."""
    results = {}
    with connection.cursor() as cursor:
        for statement in _sql("plug"):
            cursor.execute(statement)
        cursor.execute(_sql("hold"))
        try:
            threads = _send({"plug": {"order_no": plug_order.order_no, "amount": str(plug_order.amount),
                                      "trade_no": f"PLUG-{plug_order.order_no}"}}, results)

            def plug_waits():
                cursor.execute(_sql("waiting"))
                return cursor.fetchone()[0] == 1

            _wait_for(plug_waits, "the plug to hold its confirm open")
            threads += _send(jobs, results)
            _wait_for(lambda: BATCHER.waiting() == queued, f"{queued} notifications to queue behind the plug")
        finally:
            cursor.execute(_sql("let_go"))
    for t in threads:
        t.join(120)
    with connection.cursor() as cursor:
        cursor.execute(_sql("drop").format(name="kami_test_plug", table="payments_notification"))
    return results


def _notification(trade_no: str) -> Notification:
    return Notification.objects.get(trade_no=trade_no)


def test_each_notification_in_a_batch_gets_its_own_outcome_and_acknowledgement(make_product):
    # given a plug order, a good order, one already paid, one for another amount, one whose keys
    # went after it was made, and an order number nobody issued
    enable_sandbox()
    hot, scarce = make_product(), make_product()
    add_keys(hot, [f"HOT-{i}" for i in range(4)])
    add_keys(scarce, ["SCARCE-1", "SCARCE-2"])
    plug, good, paid, wrong = make_orders(hot, [1, 1, 1, 1])
    short = make_orders(scarce, [2])[0]
    Key.objects.filter(product=scarce).order_by("id").first().delete()
    assert sandbox_notify(Client(), order_no=paid.order_no, amount=str(paid.amount), trade_no="DUP-1").content == b"ok"
    BATCHER.sizes.clear()
    # when their notifications arrive together, with a forgery, while the plug's confirm commits
    jobs = {
        "good": {"order_no": good.order_no, "amount": str(good.amount), "trade_no": "GOOD-1"},
        "duplicate": {"order_no": paid.order_no, "amount": str(paid.amount), "trade_no": "DUP-1"},
        "wrong_amount": {"order_no": wrong.order_no, "amount": "0.01", "trade_no": "WRONG-1"},
        "unknown": {"order_no": "260101000099999999", "amount": "29.90", "trade_no": "UNKNOWN-1"},
        "short": {"order_no": short.order_no, "amount": str(short.amount), "trade_no": "SHORT-1"},
        "forged": {"order_no": good.order_no, "amount": str(good.amount), "trade_no": "FORGED-1", "signature": "00" * 32},
    }
    results = _batch_behind_plug(plug, jobs, queued=5)
    # then the five verified ones were confirmed in one transaction (the forgery never reached it)
    assert BATCHER.sizes == {1: 1, 5: 1}, BATCHER.sizes
    # and each got its own acknowledgement and outcome
    assert results.pop("forged")[0] == 400
    assert set(results.values()) == {(200, b"ok")}, results
    results_by_trade = {t: _notification(t).result for t in ("GOOD-1", "WRONG-1", "UNKNOWN-1", "SHORT-1")}
    assert results_by_trade == {"GOOD-1": "fulfilled", "WRONG-1": "flagged", "UNKNOWN-1": "unknown_order",
                                "SHORT-1": "awaiting_stock"}
    assert list(Notification.objects.filter(trade_no="DUP-1").order_by("id").values_list("result", flat=True)) == [
        "fulfilled", "duplicate"]
    forged = Notification.objects.get(verified=False)
    assert forged.result == "rejected"
    statuses = {o.order_no: o.status for o in Order.objects.all()}
    assert [statuses[o.order_no] for o in (plug, good, paid, wrong, short)] == [
        "fulfilled", "fulfilled", "fulfilled", "flagged", "awaiting_stock"]
    assert OutboxMessage.objects.filter(kind="admin_alert", payload__event="awaiting_stock").count() == 1
    assert OutboxMessage.objects.filter(kind="order_keys").count() == 3
    assert Payment.objects.count() == 5  # plug, good, paid, wrong (flagged), short (awaiting)
    assert Key.objects.filter(product=hot, status="sold").count() == 3


def _refuse_trade(cursor, trade_no: str) -> None:
    for statement in _sql("refuse"):
        cursor.execute(statement.replace("{trade_no}", trade_no))


def test_a_batch_that_fails_runs_its_members_alone_and_keeps_every_raw_notification(make_product):
    # given three good orders and one whose payment row the database refuses
    enable_sandbox()
    hot = make_product()
    add_keys(hot, [f"HOT-{i}" for i in range(6)])
    plug, *goods, bad = make_orders(hot, [1, 1, 2, 1, 1])
    with connection.cursor() as cursor:
        _refuse_trade(cursor, "BAD-1")
    BATCHER.sizes.clear()
    try:
        # when they arrive together behind the plug
        jobs = {f"good{i}": {"order_no": o.order_no, "amount": str(o.amount), "trade_no": f"GOOD-{i}"}
                for i, o in enumerate(goods)}
        jobs["bad"] = {"order_no": bad.order_no, "amount": str(bad.amount), "trade_no": "BAD-1"}
        results = _batch_behind_plug(plug, jobs, queued=4)
    finally:
        with connection.cursor() as cursor:
            cursor.execute(_sql("drop").format(name="kami_test_refuse", table="payments_payment"))
    # then the batch rolled back, and alone each good one was fulfilled and the bad one asked for a retry
    assert 4 not in BATCHER.sizes, BATCHER.sizes
    assert results.pop("bad") == (400, b"fail")
    assert set(results.values()) == {(200, b"ok")}, results
    assert all(Order.objects.get(pk=o.pk).status == "fulfilled" for o in [plug, *goods])
    assert Order.objects.get(pk=bad.pk).status == "pending"
    # and every raw notification is kept once: the bad one with its error
    rows = {n.trade_no: n for n in Notification.objects.all()}
    assert len(rows) == Notification.objects.count() == 5
    assert rows["BAD-1"].result == "error" and "payment refused by the test" in rows["BAD-1"].error
    assert all(rows[f"GOOD-{i}"].result == "fulfilled" for i in range(3))
    assert sorted(Key.objects.filter(status="sold").values_list("order_keys__order_id", flat=True)) == sorted(
        [plug.pk, goods[0].pk, goods[1].pk, goods[1].pk, goods[2].pk])
    # and the gateway's retry applies it once
    assert sandbox_notify(Client(), order_no=bad.order_no, amount=str(bad.amount), trade_no="BAD-1").content == b"ok"
    assert Order.objects.get(pk=bad.pk).status == "fulfilled"


def test_the_batch_writes_raw_notifications_exactly_as_the_orm_does():
    # given notifications with every kind of value a raw row holds: Unicode and nested JSON headers,
    # NUL escaped as notify.py stores it, empty and null columns
    def row(trade_no: str, **values) -> Notification:
        given = {"gateway": "sandbox", "received_at": clock.now(), "method": "POST", "remote_addr": "203.0.113.9",
                 "headers": {"Content-Type": "application/json", "X-Nom": "Zoë ☃ 支付", "list": [1, None, "é"]},
                 "body": '{"a": "\\x00 ünïcode \' \\" \\\\"}', "verified": True, "order_no": "K-1",
                 "result": Notification.Result.FULFILLED}
        return Notification(**{**given, **values, "trade_no": trade_no})
    orm = [row("ORM-1", handled_ms=7), row("ORM-2", error="x\\x00y", remote_addr="")]
    Notification.objects.bulk_create(orm)
    # when the batch writes the same rows (in its transaction)
    raw = [row("RAW-1", handled_ms=7), row("RAW-2", error="x\\x00y", remote_addr="")]
    with transaction.atomic():
        _rows_write([raw[0], None, raw[1]])
    # then the stored rows are the ORM's, column by column, and the instances are saved ones with their keys
    def stored(pk: int) -> dict:
        return {f.attname: getattr(Notification.objects.get(pk=pk), f.attname)
                for f in Notification._meta.concrete_fields if f.attname not in ("id", "trade_no", "received_at")}
    for mine, theirs in zip(raw, orm):
        assert mine.pk is not None and not mine._state.adding
        assert Notification.objects.get(pk=mine.pk).trade_no == mine.trade_no
        assert stored(mine.pk) == stored(theirs.pk)
    assert Notification.objects.get(pk=raw[0].pk).received_at == raw[0].received_at
