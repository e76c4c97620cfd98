"""`kami serve`'s servers — uvicorn (the default, kami/asgi.py) and waitress (`--server waitress`,
the default before) — keep the same promises: forwarding headers count only from
KAMI_TRUSTED_PROXIES, a forged notification is refused without a cookie and with its request id,
pages and the order API answer, a body past KAMI_REQUEST_MAX_BYTES is refused unread, and a client
sending its body slowly holds a socket, not one of the threads. uvicorn also closes a connection
silent mid-request (waitress does too, on its 30-second sweep). The loop's own confirm:
tests/fulfilment/test_notify_loop.py; many slow senders: tests/hostile/test_serve_limits.py."""
from __future__ import annotations

import socket
import time

import httpx
import pytest

from tests.test_security_deploy import buyer_ips, data_dir, order_create, serve, template  # noqa: F401 (fixtures)

pytestmark = [pytest.mark.sqlite_only, pytest.mark.slow]


@pytest.mark.parametrize("server_name", ["uvicorn", "waitress"])
def test_each_server_serves_the_shop_behind_a_trusted_proxy_and_slow_senders_hold_no_thread(data_dir, serve,  # noqa: F811
                                                                                           server_name):
    # given the server with one thread, behind a trusted proxy, one unpaid order per client address
    server = serve(data_dir, "--no-worker", "--server", server_name, "--processes", "1", "--threads", "1",
                   KAMI_SANDBOX="1", KAMI_TRUSTED_PROXIES="127.0.0.1", KAMI_PENDING_LIMIT_IP="1",
                   KAMI_SERVE_IDLE_SECONDS="3")
    # and three clients that send headers and a few bytes of their body, then nothing
    slow = []
    for _ in range(3):
        sock = socket.create_connection(("127.0.0.1", server.port))
        sock.sendall(b"POST /api/v1/orders HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 1000\r\n\r\n{\"pro")
        slow.append(sock)
    try:
        time.sleep(0.3)
        # when two clients of the proxy order, the first one twice, and a buyer opens the home page
        first = order_create(server, email="a1@example.com", forwarded_for="203.0.113.7")
        again = order_create(server, email="a2@example.com", forwarded_for="203.0.113.7")
        other = order_create(server, email="b1@example.com", forwarded_for="198.51.100.1, 203.0.113.8")
        home = httpx.get(f"{server.base}/", timeout=20)
    finally:
        for sock in slow:
            sock.close()
    # then the one thread was free for them, and each client is its own address, as with waitress
    assert (first.status_code, again.status_code, other.status_code, home.status_code) == (201, 400, 201, 200)
    assert buyer_ips(data_dir) == {"a1@example.com": "203.0.113.7", "b1@example.com": "203.0.113.8"}
    # and a forged notification is refused on the WSGI path, with no cookie and with its request id
    forged = httpx.post(f"{server.base}/pay/sandbox/notify", content=b"{}", timeout=20,
                        headers={"Content-Type": "application/json", "X-Sandbox-Signature": "00"})
    assert forged.status_code in (400, 403) and "set-cookie" not in forged.headers
    assert forged.headers.get("x-request-id")
    # and a body past KAMI_REQUEST_MAX_BYTES is refused from its length, unread
    with socket.create_connection(("127.0.0.1", server.port), timeout=20) as sock:
        sock.sendall(b"POST /api/v1/orders HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000000000\r\n\r\n{}")
        assert sock.recv(100).startswith(b"HTTP/1.1 413 ")
    if server_name == "waitress":
        return  # its idle sweep runs every 30 s
    # and a connection that stops sending, before its request is whole, is closed once silent for
    # KAMI_SERVE_IDLE_SECONDS (uvicorn alone keeps it for ever: kami/cli/uvicorn_protocol.py)
    with socket.create_connection(("127.0.0.1", server.port), timeout=20) as sock:
        sock.sendall(b"POST /api/v1/orders HTTP/1.1\r\nHost: x\r\n")
        started = time.monotonic()
        assert sock.recv(100) == b"" and 2.5 < time.monotonic() - started < 10
