"""A loopback fake of an Epay site's `api.php?act=order`, answering like 彩虹易支付 does.

A real HTTP server on 127.0.0.1 (any free port) in a thread: the gateway's httpx client talks to
it over a socket exactly as it would to the real site. `mode` makes it misbehave.
"""
from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit


class FakeEpay:
    def __init__(self, *, pid: str, key: str):
        self.pid, self.key = pid, key
        self.orders: dict[str, dict] = {}  # out_trade_no -> the JSON answered for it
        self.mode = "normal"  # normal | error500 | not_json | slow | drop | redirect | missing
        self.requests: list[str] = []  # request paths with their query, as received
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/"

    def start(self) -> "FakeEpay":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def answer(self, query: dict[str, str]) -> tuple[int, bytes]:
        if query.get("act") != "order":
            return 200, _json({"code": -4, "msg": "No Act!"})
        if not query.get("pid") or not query.get("key"):
            return 200, _json({"code": -3, "msg": "PID或KEY不能为空"})
        if query["pid"] != self.pid or query["key"] != self.key:
            return 200, _json({"code": -3, "msg": "KEY校验失败"})
        row = self.orders.get(query.get("out_trade_no", ""))
        if row is None:
            return 200, _json({"code": -1, "msg": "订单号不存在"})
        return 200, _json(row)

    def _handler(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (http.server's naming)
                fake.requests.append(self.path)
                if fake.mode == "drop":
                    self.close_connection = True
                    self.connection.close()
                    return
                if fake.mode == "slow":
                    time.sleep(1.5)
                parts = urlsplit(self.path)
                query = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
                if parts.path != "/api.php":
                    status, body = 404, b"not found"
                elif fake.mode == "redirect":
                    self.send_response(301)
                    self.send_header("Location", "https://pay.example/api.php?" + parts.query)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                elif fake.mode == "missing":
                    status, body = 404, b"<html>404 Not Found</html>"
                elif fake.mode == "error500":
                    status, body = 500, b"<html>Internal Server Error</html>"
                elif fake.mode == "not_json":
                    status, body = 200, b"<html>\xe7\xbd\x91\xe7\xab\x99\xe7\xbb\xb4\xe6\x8a\xa4\xe4\xb8\xad</html>"
                else:
                    status, body = fake.answer(query)
                self.send_response(status)
                self.send_header("Content-Type", "text/html; charset=utf-8")  # what PHP sends by default
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):  # keep test output quiet
                pass

        return Handler


def _json(data: dict) -> bytes:
    return json.dumps(data, ensure_ascii=False).encode("utf-8")
