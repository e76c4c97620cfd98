"""`kami worker`: one pass with --once, and the long-running loop stopping cleanly on SIGTERM."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import call_command
from django.db import connection

from kami.delivery.models import OutboxMessage
from kami.orders.models import Order
from kami.stock.models import Key
from tests.delivery.conftest import add_keys
from tests.sandbox_play import enable_sandbox, sandbox_notify

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.django_db(transaction=True)
def test_once_sweeps_then_delivers_and_prints_counts(smtp, client, make_product):
    # given: a paid order parked for want of stock, then keys arrive by a path that did not backfill
    enable_sandbox()
    product = make_product()
    add_keys(product, ["LATE-0001"])
    data = client.post("/api/v1/orders", {"product": product.slug, "quantity": 1, "email": "buyer@example.com",
                                          "gateway": "sandbox"}, content_type="application/json").json()
    Key.objects.update(status="void")
    sandbox_notify(client, order_no=data["order_no"], amount=data["amount"])
    assert Order.objects.get(order_no=data["order_no"]).status == "awaiting_stock"
    add_keys(product, ["LATE-0002"])
    out = StringIO()
    # when
    call_command("worker", "--once", "--worker-id", "cli", stdout=out)
    # then: the sweep fulfilled it and the same run emailed the keys (and the earlier alert)
    printed = out.getvalue().strip()
    assert printed.startswith("deliveries: 2 (sent 2, failed 0, manual 0, lost 0); sweep: ")
    assert "expired 0" in printed and "backfilled 1" in printed
    assert Order.objects.get(order_no=data["order_no"]).status == "fulfilled"
    [mail] = smtp.to("buyer@example.com")
    assert "LATE-0002" in mail.get_body(preferencelist=("plain",)).get_content()
    assert smtp.to("owner@shop.test")
    assert set(OutboxMessage.objects.values_list("status", flat=True)) == {"sent"}


def database_url() -> str:
    db = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{db['NAME']}"
    scheme = "postgres" if connection.vendor == "postgresql" else "mysql"
    auth = db["USER"] + (f":{db['PASSWORD']}" if db.get("PASSWORD") else "")
    return f"{scheme}://{auth}@{db['HOST'] or '127.0.0.1'}:{db['PORT']}/{db['NAME']}"


@pytest.mark.django_db(transaction=True)
def test_worker_process_delivers_and_stops_on_sigterm(smtp, fulfilled_order):
    # given: an order to deliver, and the real `kami worker` in its own process
    fulfilled_order(keys=["PROC-KEY-0001"])
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "kami.settings", "DATABASE_URL": database_url(),
           "EMAIL_URL": f"smtp://127.0.0.1:{smtp.port}", "KAMI_WORKER_POLL_SECONDS": "0.1",
           "KAMI_FROM_EMAIL": "noreply@shop.test", "KAMI_LOG_LEVEL": "INFO"}
    proc = subprocess.Popen([sys.executable, "-m", "kami", "worker", "--worker-id", "proc"], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not smtp.messages and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
        # when
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    # then
    assert proc.returncode == 0, err
    assert [str(m["To"]) for m in smtp.messages] == ["buyer@example.com"]
    row = OutboxMessage.objects.get(kind="order_keys")
    assert row.status == "sent" and row.attempt_log.get().worker == "proc"
    assert f"outbox #{row.pk} order_keys via email: sent" in err
    assert "SIGTERM: stopping after the current message" in err and "worker proc stopped" in err
    assert "PROC-KEY-0001" not in out + err
