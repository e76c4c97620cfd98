"""A merchant's mint endpoint on loopback: a real HTTP server that checks every request with the
`standardwebhooks` package (as docs/api.md tells a merchant to), and mints keys idempotently — the
same idempotency key always gets the same key, as a well-behaved merchant system does.

Scripted per call: `script` is a list of behaviours taken one per request (then "ok"):
    "ok"             200 {"keys": [...]} one per item
    "slow"           sleeps `slow_seconds` first, then answers like "ok" (the key is minted anyway)
    500 (an int)     that HTTP status
    bytes / dict     that exact body (bytes) or JSON (dict), with 200: a malformed answer
"""
from __future__ import annotations

import hashlib
import json
import threading
import time
from http.server import BaseHTTPRequestHandler

from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from tests.loopback import LoopbackServer


class Merchant(LoopbackServer):
    def __init__(self):
        self.secret = ""
        self.script: list = []
        self.slow_seconds = 1.5
        self.calls: list[dict] = []  # every verified request's payload
        self.headers: list[dict] = []
        self.rejected: list[str] = []
        self.minted: dict[str, str] = {}  # idempotency key → key (what a real merchant would store)
        self.mint_salt = ""  # changed by a test to play a merchant that is *not* idempotent
        self._lock = threading.Lock()
        merchant = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (http.server's naming)
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                status, answer = merchant.handle(dict(self.headers.items()), body)
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(answer)))
                    self.end_headers()
                    self.wfile.write(answer)
                except OSError:
                    pass  # the caller gave up waiting (the slow case)

            def log_message(self, *args):
                pass

        self._serve(Handler)

    @property
    def url(self) -> str:
        return f"{self.base_url}/kami/mint?token=s3cr3t-path"

    def handle(self, headers: dict, body: bytes) -> tuple[int, bytes]:
        try:
            payload = Webhook(self.secret).verify(body, headers)
        except WebhookVerificationError as exc:
            with self._lock:
                self.rejected.append(str(exc))
            return 401, b'{"error": "bad signature"}'
        with self._lock:
            self.calls.append(payload)
            self.headers.append({k.lower(): v for k, v in headers.items()})
            step = self.script.pop(0) if self.script else "ok"
        if isinstance(step, int):
            return step, b'{"error": "having a bad day"}'
        if isinstance(step, bytes):
            return 200, step
        if isinstance(step, dict):
            return 200, json.dumps(step).encode()
        if step == "slow":
            time.sleep(self.slow_seconds)
        keys = [self.mint(item["idempotency_key"]) for item in payload["data"]["items"]]
        return 200, json.dumps({"keys": keys}).encode()

    def mint(self, idempotency_key: str) -> str:
        with self._lock:
            if idempotency_key not in self.minted or self.mint_salt:
                digest = hashlib.sha256(f"{self.mint_salt}{idempotency_key}".encode()).hexdigest().upper()
                self.minted[idempotency_key] = f"MINT-{digest[:4]}-{digest[4:8]}-{digest[8:12]}"
            return self.minted[idempotency_key]
