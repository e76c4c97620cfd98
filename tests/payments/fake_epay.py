"""A loopback fake of an Epay site's `api.php?act=order` (GET) and `api.php?act=refund` (POST,
newer 彩虹 versions; `refunds_supported = False` plays an older site: "No Act!"), answering like
彩虹易支付 does.

A real HTTP server on 127.0.0.1 (any free port) in a thread: the gateway's httpx client talks to
it over a socket exactly as it would to the real site. `mode` makes it misbehave.
"""
from __future__ import annotations

import json
import time
from decimal import Decimal
from http.server import BaseHTTPRequestHandler
from urllib.parse import parse_qs, urlsplit
from tests.loopback import LoopbackServer


class FakeEpay(LoopbackServer):
    def __init__(self, *, pid: str, key: str):
        self.pid, self.key = pid, key
        self.orders: dict[str, dict] = {}  # out_trade_no -> the JSON answered for it
        self.mode = "normal"  # normal | error500 | not_json | slow | drop | redirect | missing
        self.requests: list[str] = []  # request paths with their query, as received
        self.posted: list[dict[str, str]] = []  # POST form bodies, as received
        self.refunds: list[dict[str, str]] = []  # refunds made: {"out_trade_no", "trade_no", "money"}
        self.refunds_supported = True
        self.success_code = 1  # 1 in V1; some forks answer code 0 with msg 退款成功
        self._serve(self._handler())

    @property
    def url(self) -> str:
        return f"{self.base_url}/"

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

    def refund(self, query: dict[str, str], form: dict[str, str]) -> tuple[int, bytes]:
        if query.get("act") != "refund" or not self.refunds_supported:
            return self.answer({**form, **query})  # an older site: No Act!
        if not form.get("pid") or not form.get("key"):
            return 200, _json({"code": -3, "msg": "PID或KEY不能为空"})
        if form["pid"] != self.pid or form["key"] != self.key:
            return 200, _json({"code": -3, "msg": "KEY校验失败"})
        out_trade_no = form.get("out_trade_no", "")
        row = self.orders.get(out_trade_no)
        if row is None or (form.get("trade_no") and str(row.get("trade_no")) != form["trade_no"]):
            return 200, _json({"code": -1, "msg": "订单号不存在"})
        if str(row.get("status")) != "1":
            return 200, _json({"code": -1, "msg": "订单未支付，无法退款"})
        if any(r["out_trade_no"] == out_trade_no for r in self.refunds):
            return 200, _json({"code": -1, "msg": "该订单已退款"})
        if Decimal(form.get("money") or "0") > Decimal(str(row.get("money"))):
            return 200, _json({"code": -1, "msg": "退款金额不能大于订单金额"})
        self.refunds.append({"out_trade_no": out_trade_no, "trade_no": form.get("trade_no", ""), "money": form["money"]})
        return 200, _json({"code": self.success_code, "msg": "退款成功"})

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

            def do_POST(self):  # noqa: N802
                fake.requests.append(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                form = {k: v[-1] for k, v in parse_qs(self.rfile.read(length).decode(), keep_blank_values=True).items()}
                fake.posted.append(form)
                parts = urlsplit(self.path)
                query = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
                if parts.path != "/api.php":
                    status, body = 404, b"not found"
                elif fake.mode == "drop":
                    self.close_connection = True
                    self.connection.close()
                    return
                elif fake.mode == "error500":
                    status, body = 500, b"<html>Internal Server Error</html>"
                elif fake.mode == "not_json":
                    status, body = 200, b"<html>maintenance</html>"
                else:
                    status, body = fake.refund(query, form)
                self.send_response(status)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):  # keep test output quiet
                pass

        return Handler


def _json(data: dict) -> bytes:
    return json.dumps(data, ensure_ascii=False).encode("utf-8")
