"""A merchant's webhook receiver on loopback: a real HTTP server that checks every request with the
`standardwebhooks` package (the reference implementation a merchant would use), exactly as
docs/api.md tells them to. It can be told to be down (nothing listening), to answer an error or a
redirect, or to know only some secrets (a rotation)."""
from __future__ import annotations

import json
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from tests.ports import free_port


class _Handler(BaseHTTPRequestHandler):
    receiver = None  # set per server

    def do_POST(self):  # noqa: N802 (http.server's naming)
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        status, answer = self.receiver.handle(dict(self.headers.items()), body)
        self.send_response(status)
        if self.receiver.redirect_to:
            self.send_header("Location", self.receiver.redirect_to)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *args):
        pass


class Receiver:
    """Verifies with every secret in `secrets` (any one passing is enough, as a receiver mid-rotation
    does). `received` holds the accepted events; `rejected` the verification errors; `raw` every
    request as (headers, body), for replaying."""

    def __init__(self, *, secrets: list[str] | None = None, tls: ssl.SSLContext | None = None):
        self.port = free_port()
        self.tls = tls  # a server context: https, recording the name each client asked for (`sni`)
        self.sni: list[str | None] = []
        self.secrets = list(secrets or [])
        self.fail_with: int | None = None
        self.redirect_to: str | None = None  # answer 302 with this Location
        self.received: list[dict] = []
        self.headers: list[dict] = []
        self.rejected: list[str] = []
        self.raw: list[tuple[dict, bytes]] = []
        self._lock = threading.Lock()
        self._server = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks/kami"

    def start(self) -> "Receiver":
        handler = type("Handler", (_Handler,), {"receiver": self})
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), handler)
        if self.tls is not None:
            self.tls.sni_callback = lambda _sock, name, _context: self.sni.append(name)
            self._server.socket = self.tls.wrap_socket(self._server.socket, server_side=True)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def verify(self, headers: dict, body: bytes) -> dict:
        """standardwebhooks' check with each known secret; raises WebhookVerificationError if none passes."""
        error = WebhookVerificationError("no secret configured")
        for secret in self.secrets:
            try:
                return Webhook(secret).verify(body, headers)
            except WebhookVerificationError as exc:
                error = exc
        raise error

    def handle(self, headers: dict, body: bytes) -> tuple[int, bytes]:
        with self._lock:
            self.raw.append((headers, body))
        try:
            event = self.verify(headers, body)
        except WebhookVerificationError as exc:
            with self._lock:
                self.rejected.append(str(exc))
            return 400, f"rejected: {exc}".encode()
        if self.fail_with:
            return self.fail_with, b"receiver is having a bad day"
        if self.redirect_to:
            return 302, b"moved"
        with self._lock:
            self.received.append(event)
            self.headers.append({k.lower(): v for k, v in headers.items()})
        return 200, b"ok, thanks"

    def types(self) -> list[str]:
        with self._lock:
            return [e["type"] for e in self.received]
