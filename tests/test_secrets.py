"""Keys are secrets (invariant 5): a whole purchase logged at DEBUG, SQL included, never shows a
plaintext key, and the key table's raw bytes never hold one."""
from __future__ import annotations

import logging

import pytest
from django.db import connection
from django.test import Client

from kami.delivery.worker import run_once
from tests.factories import add_keys
from tests.sandbox_play import enable_sandbox, sandbox_notify

pytestmark = pytest.mark.django_db(transaction=True)

PLAINTEXTS = ["SECRET-KEY-AAAA-0001", "SECRET-KEY-BBBB-0002", "秘密-卡密-🔑-0003"]


def purchase_logging_sql(product, *, worker_id: str) -> dict:
    """Buy two of `product`'s keys (PLAINTEXTS) through the order API and the sandbox, and run the
    worker to the email, with every SQL statement logged with its parameters; the order's detail."""
    enable_sandbox()
    add_keys(product, PLAINTEXTS)
    client = Client()
    connection.force_debug_cursor = True
    try:
        created = client.post("/api/v1/orders", {"product": product.slug, "quantity": 2, "email": "b@example.com",
                                                 "gateway": "sandbox"}, content_type="application/json").json()
        sandbox_notify(client, order_no=created["order_no"], amount=created["amount"])
        detail = client.get(f"/api/v1/orders/{created['order_no']}", HTTP_X_ORDER_TOKEN=created["token"]).json()
        run_once(worker_id=worker_id)
    finally:
        connection.force_debug_cursor = False
    return detail


def test_full_purchase_at_debug_never_logs_a_key(make_product, caplog):
    # given
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="django.db.backends")
    # when
    detail = purchase_logging_sql(make_product(), worker_id="secrets-test")
    # then
    assert detail["status"] == "fulfilled" and len(detail["keys"]) == 2
    logged = "\n".join(f"{r.getMessage()} {r.args!r} {r.__dict__.get('sql', '')} {r.__dict__.get('params', '')!r}"
                       for r in caplog.records)
    assert "SELECT" in logged  # the SQL really was logged
    for text in PLAINTEXTS:
        assert text not in logged


def test_key_table_raw_bytes_hold_no_plaintext(make_product):
    product = make_product()
    add_keys(product, PLAINTEXTS)
    with connection.cursor() as cursor:
        cursor.execute("SELECT * FROM stock_key")
        dump = b"".join(bytes(v) if isinstance(v, (bytes, memoryview)) else str(v).encode() for row in cursor.fetchall() for v in row)
    for text in PLAINTEXTS:
        assert text.encode() not in dump
    assert len(dump) > 100
