"""Loopback fakes of the alert receivers: the Telegram Bot API and a merchant's webhook endpoint.
Both check requests the way the real thing does — the bot token in the path, the signature over
the exact body — and can be told to fail."""
from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from http.server import BaseHTTPRequestHandler
from urllib.parse import parse_qs

from tests.loopback import LoopbackServer


class _Handler(BaseHTTPRequestHandler):
    fake = None  # set per server

    def do_POST(self):  # noqa: N802 (http.server's naming)
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        status, headers, answer = self.fake.handle(self.path, dict(self.headers.items()), body)
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *args):  # keep test output quiet (and the token out of it)
        pass


class _Fake(LoopbackServer):
    def __init__(self):
        self.fail_with: int | None = None  # answer this HTTP status instead of accepting
        self.requests = 0
        self._lock = threading.Lock()
        handler = type("Handler", (_Handler,), {"fake": self})
        self._serve(handler)


class FakeTelegram(_Fake):
    """POST /bot<token>/sendMessage with chat_id and text, form-encoded, as the Bot API takes it."""

    def __init__(self, *, token: str):
        self.token = token
        self.messages: list[dict] = []
        super().__init__()

    def handle(self, path: str, headers: dict, body: bytes) -> tuple[int, dict, bytes]:
        with self._lock:
            self.requests += 1
        if path != f"/bot{self.token}/sendMessage":
            # the real API answers 404 for an unknown token; this one echoes the path, as a careless
            # proxy might, so the test sees that Kami scrubs the token from what it records
            return 404, {}, _json({"ok": False, "error_code": 404, "description": f"Not Found: {path}"})
        if self.fail_with:
            return self.fail_with, {}, _json({"ok": False, "error_code": self.fail_with,
                                              "description": f"Bad Gateway (test) at {path}"})
        form = {k: v[0] for k, v in parse_qs(body.decode()).items()}
        with self._lock:
            self.messages.append(form)
        return 200, {}, _json({"ok": True, "result": {"message_id": len(self.messages), "text": form.get("text", "")}})


class FakeWebhookReceiver(_Fake):
    """A merchant's endpoint that verifies Kami-Signature exactly as docs/delivery.md tells them to."""

    TOLERANCE = 300

    def __init__(self, *, secret: str):
        self.secret = secret
        self.events: list[dict] = []
        self.rejected: list[str] = []
        self.redirect_to = ""
        super().__init__()

    def handle(self, path: str, headers: dict, body: bytes) -> tuple[int, dict, bytes]:
        with self._lock:
            self.requests += 1
        if self.redirect_to:
            return 302, {"Location": self.redirect_to}, b"{}"
        problem = verify(self.secret, headers.get("Kami-Signature", ""), body, tolerance=self.TOLERANCE)
        if problem:
            with self._lock:
                self.rejected.append(problem)
            return 400, {}, _json({"error": problem})
        if self.fail_with:
            return self.fail_with, {}, b"{}"
        with self._lock:
            self.events.append(json.loads(body))
        return 204 if len(self.events) % 2 else 200, {}, b""


def verify(secret: str, header: str, body: bytes, *, tolerance: int) -> str:
    """The receiver's check from docs/delivery.md; '' when the request is genuine."""
    try:
        fields = dict(part.split("=", 1) for part in header.split(","))
        timestamp, given = int(fields["t"]), fields["v1"]
    except (ValueError, KeyError):
        return "malformed signature header"
    if abs(time.time() - timestamp) > tolerance:
        return "timestamp outside the tolerance"
    expected = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return "" if hmac.compare_digest(expected, given) else "signature mismatch"


def _json(data: dict) -> bytes:
    return json.dumps(data).encode()
