"""`kami serve --server granian` (several processes) keeps what tests/test_security_deploy.py
proves of the default server: forwarding headers reach kami.core.net unchanged and count only
from KAMI_TRUSTED_PROXIES; a gateway notification is confirmed through the lean path."""
from __future__ import annotations

import httpx
import pytest

from tests.test_security_deploy import buyer_ips, data_dir, order_create, serve, template  # noqa: F401 (fixtures)

pytestmark = [pytest.mark.sqlite_only, pytest.mark.slow]
GRANIAN = ("--no-worker", "--server", "granian", "--processes", "2")


def test_granian_passes_forwarding_headers_through_to_the_trusted_proxy_check(data_dir, serve):  # noqa: F811
    # given granian with two processes behind a trusted proxy, one unpaid order per client address
    server = serve(data_dir, *GRANIAN, KAMI_SANDBOX="1", KAMI_TRUSTED_PROXIES="127.0.0.1", KAMI_PENDING_LIMIT_IP="1")
    # when two clients of the proxy order, the first one twice
    first = order_create(server, email="a1@example.com", forwarded_for="203.0.113.7")
    again = order_create(server, email="a2@example.com", forwarded_for="203.0.113.7")
    other = order_create(server, email="b1@example.com", forwarded_for="198.51.100.1, 203.0.113.8")
    # then each client is its own address, as with waitress
    assert (first.status_code, again.status_code, other.status_code) == (201, 400, 201)
    assert buyer_ips(data_dir) == {"a1@example.com": "203.0.113.7", "b1@example.com": "203.0.113.8"}


def test_granian_does_not_believe_forwarding_headers_from_an_untrusted_peer(data_dir, serve):  # noqa: F811
    # given no trusted proxy
    server = serve(data_dir, *GRANIAN, KAMI_SANDBOX="1", KAMI_PENDING_LIMIT_IP="1")
    # when one client claims to be two, and a relayed request claims to come from this machine
    first = order_create(server, email="a1@example.com", forwarded_for="203.0.113.7")
    second = order_create(server, email="b1@example.com", forwarded_for="203.0.113.8")
    relayed = httpx.get(f"{server.base}/pay/sandbox/checkout/K1?amount=48.00&currency=CNY",
                        headers={"X-Forwarded-For": "203.0.113.9"}, timeout=20)
    # then both orders are the peer's, a relayed request is not a local one (no free sandbox
    # payment), and the notify route answers on the lean path, with no cookie
    assert (first.status_code, second.status_code) == (201, 400)
    assert buyer_ips(data_dir) == {"a1@example.com": "127.0.0.1"}
    assert relayed.status_code == 404
    forged = httpx.post(f"{server.base}/pay/sandbox/notify", content=b"{}", timeout=20,
                        headers={"Content-Type": "application/json", "X-Sandbox-Signature": "00"})
    assert forged.status_code in (400, 403) and "set-cookie" not in forged.headers
