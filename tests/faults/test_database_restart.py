"""The database server stopped and started again in the middle of a notification storm (issue 12),
with `kami serve` and its worker left running: notifications answered during the outage get the
gateway's "retry" (never a success), /healthz says 503 and then 200, both processes reconnect by
themselves, and the gateway's retries complete every order: each fulfilled once, each buyer
emailed. A private server per test (tests/faults/servers.py): the shared ones serve other runs."""
from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from decimal import Decimal
from pathlib import Path

import httpx
import pytest
from aiosmtpd.controller import Controller
from django.db import connection

from kami.payments.gateways.sandbox import SIGNATURE_HEADER, SandboxGateway
from tests.delivery.conftest import Mailbox
from tests.loopback import CLIENT_TLS
from tests.ports import free_port
from tests.faults.processes import kami_run, kami_start, log_has, wait_until
from tests.faults.servers import PrivateMariaDB, PrivatePostgres, db_counts

ORDERS = 24
SECRET = "fault-test-sandbox-secret"
OUTAGE_SECONDS = 4


class SlowMailbox(Mailbox):
    """A mail server taking 0.2 s per message, so the worker is mid-batch when the database stops."""

    async def handle_DATA(self, server, session, envelope):
        await asyncio.sleep(0.2)
        return await super().handle_DATA(server, session, envelope)


@pytest.fixture(params=["postgresql", "mysql"])
def private_db(request):
    """A server of the engine this run tests (KAMI_TEST_DATABASE_URL), of its own."""
    if connection.vendor != request.param:
        pytest.skip(f"runs in the {request.param} run (KAMI_TEST_DATABASE_URL)")
    server = PrivatePostgres() if request.param == "postgresql" else PrivateMariaDB()
    try:
        server.start()
        server.create_database()
        yield server
    finally:
        server.remove()


class Gateway:
    """Plays the sandbox gateway: notifies each order, and retries a notification not
    acknowledged with "ok" every 0.3 s, as real gateways do (faster). Keeps every answer."""

    def __init__(self, base: str):
        self.base, self.sandbox = base, SandboxGateway(config={}, secrets={"secret": SECRET})
        self.answers: list[tuple[float, float, str, int, str]] = []  # sent, answered, order, status, body
        self.acked: Counter = Counter()
        self.lock = threading.Lock()

    def notify_until_acknowledged(self, order_no: str, amount: str, deadline: float) -> None:
        with httpx.Client(base_url=self.base, timeout=10, verify=CLIENT_TLS) as client:
            while time.monotonic() < deadline:
                body = self.sandbox.notification_body(order_no=order_no, trade_no=f"T-{order_no}", amount=amount,
                                                      currency="CNY")
                sent = time.monotonic()
                try:
                    response = client.post("/pay/sandbox/notify", content=body, headers={
                        "Content-Type": "application/json", SIGNATURE_HEADER: self.sandbox.sign(body)})
                    status, text = response.status_code, response.text
                except httpx.HTTPError as exc:
                    status, text = 0, type(exc).__name__
                with self.lock:
                    self.answers.append((sent, time.monotonic(), order_no, status, text))
                if status == 200 and text == "ok":
                    with self.lock:
                        self.acked[order_no] += 1
                    return
                time.sleep(0.3)


def shop_up(db, tmp_path: Path, smtp_port: int, port: int) -> dict:
    env = {"DATABASE_URL": db.url, "EMAIL_URL": f"smtp://127.0.0.1:{smtp_port}", "KAMI_SANDBOX": "1",
           "KAMI_DATA_DIR": str(tmp_path / "data"), "KAMI_BASE_URL": f"http://127.0.0.1:{port}",
           "KAMI_FROM_EMAIL": "noreply@shop.test", "KAMI_WORKER_POLL_SECONDS": "0.2", "KAMI_SWEEP_SECONDS": "3600",
           "KAMI_PENDING_LIMIT_IP": "0"}  # every order comes from this one loopback address
    # The four commands in one `kami shell` process: each process start costs a second of CPU (issue 10).
    commands = [["migrate", "-v", "0"], ["gateway", "set", "sandbox", "--enable", f"secret={SECRET}"],
                ["product", "add", "gift-50", "--name", "Gift 50", "--price", "50.00", "--low-stock", "0"],
                ["keys", "generate", "gift-50", "--count", str(ORDERS + 5)]]
    code = f"from django.core.management import call_command\nfor args in {commands!r}:\n    call_command(*args)"
    done = kami_run(["shell", "-c", code], env=env, timeout=180)
    assert done.returncode == 0, (done.stdout, done.stderr)
    return env


def healthz(base: str) -> int:
    try:
        return httpx.get(f"{base}/healthz", timeout=5, verify=CLIENT_TLS).status_code
    except httpx.HTTPError:
        return 0


def shop_counts(db) -> dict:
    """Counted in the shop's database, after the fact."""
    queries = {
        "fulfilled": "SELECT COUNT(*) FROM orders_order WHERE status = 'fulfilled'",
        "not_fulfilled": "SELECT COUNT(*) FROM orders_order WHERE status <> 'fulfilled'",
        "payments": "SELECT COUNT(*) FROM payments_payment",
        "keys_sold": "SELECT COUNT(*) FROM stock_key WHERE status = 'sold'",
        "order_keys": "SELECT COUNT(*) FROM orders_orderkey",
        "orders_with_keys": "SELECT COUNT(DISTINCT order_id) FROM orders_orderkey",
        "keys_sold_twice": "SELECT COUNT(*) - COUNT(DISTINCT key_id) FROM orders_orderkey",
        "emails_sent": "SELECT COUNT(*) FROM delivery_outboxmessage WHERE kind = 'order_keys' AND status = 'sent'",
        "emails_queued": "SELECT COUNT(*) FROM delivery_outboxmessage WHERE kind = 'order_keys'",
    }
    return db_counts(db, queries)


def test_database_restart_mid_storm_retries_complete_every_order(private_db, tmp_path):
    # given: a shop on its own database server, `kami serve` with its worker, real SMTP, 24 unpaid orders
    mailbox, smtp_port, port = SlowMailbox(), free_port(), free_port()
    smtp = Controller(mailbox, hostname="127.0.0.1", port=smtp_port)
    smtp.start()
    env = shop_up(private_db, tmp_path, smtp_port, port)
    base = f"http://127.0.0.1:{port}"
    serve = kami_start(["serve", "--port", str(port)], env=env, log=tmp_path / "serve.log")
    try:
        wait_until(lambda: healthz(base) == 200, timeout=30, what="kami serve answering")
        wait_until(lambda: log_has(tmp_path / "serve.log", "started (poll"), timeout=60, what="its worker started")
        orders = []
        for i in range(ORDERS):
            created = httpx.post(f"{base}/api/v1/orders", json={"product": "gift-50", "quantity": 1, "gateway": "sandbox",
                                                                 "email": f"buyer{i}@example.com"}, timeout=10,
                                 verify=CLIENT_TLS)
            assert created.status_code == 201, created.text
            orders.append((created.json()["order_no"], created.json()["amount"]))
        assert Decimal(orders[0][1]) == Decimal("50.00")
        # when: the gateway notifies every order (4 at a time, retrying) while the database stops and starts
        gateway, deadline = Gateway(base), time.monotonic() + 60
        senders = []
        for order_no, amount in orders:
            sender = threading.Thread(target=gateway.notify_until_acknowledged, args=(order_no, amount, deadline))
            sender.start()
            senders.append(sender)
            time.sleep(0.15)  # the storm spans the outage: 24 orders over ~3.6 s, the outage starts at ~1.2 s
            if len(senders) == 8:
                private_db.stop()
                down_from = time.monotonic()
                down_health = healthz(base)
        wait_until(lambda: time.monotonic() - down_from >= OUTAGE_SECONDS, timeout=OUTAGE_SECONDS + 1, what="outage")
        down_until = time.monotonic()
        private_db.start()
        up_at = time.monotonic()
        wait_until(lambda: healthz(base) == 200, timeout=15, what="/healthz 200 after the restart")
        healthy_after = time.monotonic() - up_at
        for sender in senders:
            sender.join(timeout=max(deadline - time.monotonic(), 0) + 5)
        wait_until(lambda: len(mailbox.message_ids()) >= ORDERS and len(set(mailbox.message_ids())) >= ORDERS,
                   timeout=20, what="every buyer's key email", step=0.2)
        emailed_after = time.monotonic() - up_at
    finally:
        serve.terminate()  # SIGTERM: serve stops its worker too
        try:
            serve.wait(timeout=30)
        finally:
            smtp.stop()
    # then: answers given while the database was down were all "retry"; some were given
    during = [a for a in gateway.answers if a[0] >= down_from and a[1] <= down_until]
    print(f"{len(during)} answers during the {OUTAGE_SECONDS}s outage: {Counter((a[3], a[4]) for a in during)}; "
          f"healthz 200 {healthy_after:.1f}s and all emails {emailed_after:.1f}s after the start")
    assert during and all((status, body) == (400, "fail") for _, _, _, status, body in during)
    assert down_health == 503
    assert emailed_after < 15  # the worker's batch in flight at the stop did not wait out a lease
    # and: every order acknowledged once, fulfilled once, with one key; every buyer emailed
    assert sorted(gateway.acked) == sorted(no for no, _ in orders) and set(gateway.acked.values()) == {1}
    assert shop_counts(private_db) == {"fulfilled": ORDERS, "not_fulfilled": 0, "payments": ORDERS,
                                       "keys_sold": ORDERS, "order_keys": ORDERS, "orders_with_keys": ORDERS,
                                       "keys_sold_twice": 0, "emails_sent": ORDERS,
                                       "emails_queued": ORDERS}
    for i in range(ORDERS):
        mails = mailbox.to(f"buyer{i}@example.com")
        assert mails and len({str(m["Message-ID"]) for m in mails}) == 1
