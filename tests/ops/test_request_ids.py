"""A request id on every JSON log line of a request (the proxy's X-Request-ID when it is a plain
token, else a fresh one, sent back in the answer), and the order number once the request knows it:
`kami serve` as a merchant runs it, its log lines read from its output."""
from __future__ import annotations

import json
import re

import httpx
import pytest

from tests.test_security_deploy import Server, data_dir, serve, template  # noqa: F401 (fixtures)

pytestmark = [pytest.mark.sqlite_only, pytest.mark.slow]
FRESH = re.compile(r"[0-9a-f]{16}")


def log_entries(server: Server) -> list[dict]:
    return [json.loads(line) for line in server.output().splitlines() if line.startswith("{")]


def test_each_request_logs_under_its_own_id_and_an_order_under_its_number(data_dir, serve):  # noqa: F811
    server = serve(data_dir, KAMI_LOG_FORMAT="json", KAMI_SANDBOX="1")
    # when: a request the proxy named, one named with something that is not an id, one unnamed
    named = httpx.get(f"{server.base}/no-such-page", headers={"X-Request-ID": "caddy-7f3a9b21"}, timeout=20)
    forged = httpx.get(f"{server.base}/no-such-page", headers={"X-Request-ID": "x\" ,\"level\": \"fake"}, timeout=20)
    plain = httpx.get(f"{server.base}/no-such-page", timeout=20)
    # and: a buyer orders
    order = httpx.post(f"{server.base}/api/v1/orders", json={"product": "steam-50", "quantity": 1,
                                                             "email": "ids@example.com", "gateway": "sandbox"},
                       headers={"X-Request-ID": "caddy-order-0001"}, timeout=20)
    assert order.status_code in (200, 201), order.text
    order_no = order.json()["order_no"]
    # then: each answer names its id: the proxy's, or a fresh one in place of the bad and the missing
    ids = [r.headers["X-Request-ID"] for r in (named, forged, plain)]
    assert ids[0] == "caddy-7f3a9b21"
    assert FRESH.fullmatch(ids[1]) and FRESH.fullmatch(ids[2]) and ids[1] != ids[2]
    # and each request's log line carries its own id, and the order's lines its number
    entries = log_entries(server)
    not_found = [e for e in entries if e.get("status_code") == 404]
    assert [e.get("request_id") for e in not_found] == ids, not_found
    created = [e for e in entries if e["logger"] == "kami.fulfilment.checkout"]
    assert [(e["request_id"], e["order_no"]) for e in created] == [("caddy-order-0001", order_no)], created
    # and lines outside any request (start-up, the worker thread) carry neither
    outside = [e for e in entries if e["logger"] in ("kami.serve", "kami.delivery.worker", "waitress")]
    assert outside and not any("request_id" in e or "order_no" in e for e in outside), outside
