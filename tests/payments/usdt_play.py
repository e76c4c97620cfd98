"""Playing the self-hosted USDT gateways, Epusdt/BEpusdt and TokenPay: loopback fakes of their
APIs that check our signatures the way the servers do, notifications signed and serialised the
way they send them, and the shop configured for them."""
from __future__ import annotations

import hashlib
import json
import uuid
from abc import ABC, abstractmethod
from decimal import Decimal
from http.server import BaseHTTPRequestHandler
from urllib.parse import parse_qs, urlsplit

from django.test import Client

from kami.payments.services import gateway_configure
from tests.payments.epay_play import (add_keys, create_order, fixture, last_notification,  # noqa: F401 (re-exported)
                                      nothing_delivered, payments_of, stored_text)
from tests.loopback import LoopbackServer

EPUSDT_TOKEN = "epusdt_Tk7Qw2Lm9Xz4Rp8Vb3Nc6Hd"
TOKENPAY_TOKEN = "tokenpay_Jd5Ks8Wq2Mz7Lx4Pv9Rb3Tn"


class Num(str):
    """A JSON number written with exactly this text (`42`, `29.9`), as the gateway sends it."""


def md5(text: str) -> str:
    return hashlib.md5(text.encode()).hexdigest()


def to_json(fields: dict) -> bytes:
    """`fields` as a JSON object, `Num` values written as bare numbers."""
    parts = [f"{json.dumps(k)}:{v if isinstance(v, Num) else json.dumps(v, ensure_ascii=False)}" for k, v in fields.items()]
    return ("{" + ",".join(parts) + "}").encode()


def post_json(client: Client, gateway: str, body: bytes | str, *, path: str | None = None):
    return client.post(path or f"/pay/{gateway}/notify", data=body, content_type="application/json")


def stocked_order(client: Client, make_product, *, gateway: str, keys: int = 3, quantity: int = 1, **product) -> dict:
    item = make_product(**product)
    add_keys(item, [f"KEY-{item.slug}-{i}" for i in range(keys)])
    return create_order(client, item, quantity=quantity, gateway=gateway)


# -- Epusdt ---------------------------------------------------------------------------------------

def enable_epusdt(url: str, *, token: str = EPUSDT_TOKEN, **extra: str) -> None:
    gateway_configure(name="epusdt", values={"url": url, "api_auth_token": token, **extra}, enable=True, actor="test")


def go_format(value: object) -> str:
    """A decoded JSON value as Epusdt's Go code prints it: floats with FormatFloat(f,'f',-1,64)."""
    if isinstance(value, float):
        text = format(Decimal(repr(value)), "f")
        return text.rstrip("0").rstrip(".") if "." in text else text
    return str(value)


def epusdt_signature(fields: dict, token: str = EPUSDT_TOKEN) -> str:
    """Written from the protocol page, independently of Kami's `epusdt_sign`."""
    tokens = sorted(f"{k}={go_format(v)}" for k, v in fields.items() if k != "signature" and v not in ("", None))
    return md5("&".join(tokens) + token)


def epusdt_notice(*, order_no: str, amount: str, trade_id: str | None = None, status: int = 2,
                  token: str = EPUSDT_TOKEN, **extra) -> dict:
    """A notification as Epusdt builds it: numbers as JSON numbers, then the signature."""
    fields = {"trade_id": trade_id or f"2026{order_no}", "order_id": order_no, "amount": Num(go_format(float(amount))),
              "actual_amount": Num("4.1532"), "token": "TNEns8t9jbWENbStkQdVQtHMGpbsYsQjZK",
              "block_transaction_id": "8b1c7f0e2a6d4c5b9e3f1a7d6c5b4a39", "status": Num(str(status)), **extra}
    fields["signature"] = epusdt_signature(fields, token)
    return fields


class FakeServer(LoopbackServer, ABC):
    """A real HTTP server on 127.0.0.1 (any free port) in a thread; subclasses answer requests.
    `mode` makes it misbehave: normal | error500 | not_json | drop."""

    def __init__(self):
        self.mode = "normal"
        self.requests: list[tuple[str, str, bytes]] = []  # (method, path with query, body)
        self._serve(self._handler())

    @abstractmethod
    def answer(self, method: str, path: str, query: dict, body: bytes) -> tuple[int, dict]:
        """(status, JSON) for one request, as the real server would answer it."""

    def _handler(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def _serve(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                fake.requests.append((self.command, self.path, body))
                if fake.mode == "drop":
                    self.close_connection = True
                    self.connection.close()
                    return
                parts = urlsplit(self.path)
                query = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
                if fake.mode == "error500":
                    status, payload = 500, b"<html>502 Bad Gateway</html>"
                elif fake.mode == "not_json":
                    status, payload = 200, b"<html>nginx welcome page</html>"
                else:
                    status, data = fake.answer(self.command, parts.path, query, body)
                    payload = json.dumps(data, ensure_ascii=False).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json; charset=utf-8")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = _serve  # noqa: N815 (http.server's naming)

            def log_message(self, *args):  # keep test output quiet
                pass

        return Handler


class FakeEpusdt(FakeServer):
    """Epusdt's create-transaction and check-status, answering like assimon/epusdt does."""

    def __init__(self, *, token: str = EPUSDT_TOKEN, create_path: str = "/api/v1/order/create-transaction"):
        super().__init__()
        self.token, self.create_path = token, create_path
        self.trades: dict[str, dict] = {}  # trade_id -> {order_id, amount, status}

    def answer(self, method, path, query, body):
        if method == "POST" and path == self.create_path:
            return 200, self._create(json.loads(body))  # Go decodes numbers to float64
        if method == "GET" and path.startswith("/pay/check-status/"):
            trade = self.trades.get(path.rsplit("/", 1)[-1])
            if trade is None:
                return 200, {"status_code": 10008, "message": "订单不存在", "data": None, "request_id": ""}
            return 200, _ok({"trade_id": trade["trade_id"], "status": trade["status"]})
        return 404, {"status_code": 404, "message": "404 page not found"}

    def _create(self, params: dict) -> dict:
        if params.get("signature") != epusdt_signature(params, self.token):
            return {"status_code": 401, "message": "签名认证错误", "data": None, "request_id": ""}
        if any(t["order_id"] == params["order_id"] for t in self.trades.values()):
            return {"status_code": 10002, "message": "支付交易已存在，请勿重复创建", "data": None, "request_id": ""}
        trade_id = f"2026{uuid.uuid4().hex[:16]}"
        self.trades[trade_id] = {"trade_id": trade_id, "order_id": params["order_id"], "amount": params["amount"],
                                 "status": 1}
        return _ok({"trade_id": trade_id, "order_id": params["order_id"], "amount": params["amount"],
                    "actual_amount": 4.1532, "token": "TNEns8t9jbWENbStkQdVQtHMGpbsYsQjZK",
                    "expiration_time": 1764230400, "payment_url": f"{self.url}/pay/checkout-counter/{trade_id}"})


def _ok(data: dict) -> dict:
    return {"status_code": 200, "message": "success", "data": data, "request_id": "b1344d70-ff19-4543-b601-37abfb3b3686"}


# -- TokenPay -------------------------------------------------------------------------------------

def enable_tokenpay(url: str, *, token: str = TOKENPAY_TOKEN, **extra: str) -> None:
    gateway_configure(name="tokenpay", values={"url": url, "api_token": token, **extra}, enable=True, actor="test")


def tokenpay_signature(fields: dict, token: str = TOKENPAY_TOKEN) -> str:
    """Written from TokenPay's docs (SortedDictionary, `k=v&`, ApiToken), independently of Kami's."""
    signed = [f"{k}={fields[k]}" for k in sorted(fields) if k != "Signature" and fields[k] not in ("", None)]
    return md5("&".join(signed) + token)


def tokenpay_notice(*, order_no: str, amount: str, trade_id: str = "6745f0c2-1a3b-4c5d-0010-8e9f0a1b2c3d",
                    status: int = 1, token: str = TOKENPAY_TOKEN, **extra) -> dict:
    """A notification as TokenPay's OrderNotifyService builds it: amounts as strings, Status an int."""
    fields = {"ActualAmount": amount, "Amount": "4.16", "BaseCurrency": "CNY", "BlockChainName": "TRON",
              "BlockTransactionId": "9f3c1a7e5b2d4f6a8c0e1b3d5f7a9c2e", "Currency": "USDT_TRC20", "CurrencyName": "USDT",
              "FromAddress": "TYYjzt6AWhe9hAg9DrhiYXEWKDksyohgQa", "Id": trade_id, "OutOrderId": order_no,
              "PayTime": "2026-11-27 12:03:41", "Status": Num(str(status)),
              "ToAddress": "TKGTx4pCKiKQbk8evXHTborfZn754TGViP",
              **extra}
    fields["Signature"] = tokenpay_signature(fields, token)
    return fields


class FakeTokenPay(FakeServer):
    """TokenPay's CreateOrder and Query, answering like its HomeController (Production: signatures checked)."""

    def __init__(self, *, token: str = TOKENPAY_TOKEN):
        super().__init__()
        self.token = token
        self.orders: dict[str, dict] = {}  # Id -> the order, as the Query answer's data (camelCase)

    def answer(self, method, path, query, body):
        if method == "POST" and path == "/CreateOrder":
            # C# decimal keeps the text's scale: numbers are signed as sent.
            return 200, self._create(json.loads(body, parse_float=str, parse_int=str))
        if method == "GET" and path == "/Query":
            if query.get("Signature") != md5(f"Id={query.get('Id', '')}{self.token}"):
                return 200, {"success": False, "message": "签名验证失败！"}
            row = self.orders.get(query.get("Id", ""))
            if row is None:
                return 200, {"success": False, "message": "订单不存在！"}
            return 200, {"success": True, "message": "订单信息获取成功！", "data": row}
        return 404, {"type": "https://tools.ietf.org/html/rfc7231#section-6.5.4", "status": 404}

    def _create(self, params: dict) -> dict:
        if params.get("Signature") != tokenpay_signature(params, self.token):
            return {"success": False, "message": "签名验证失败！"}
        if any(row["outOrderId"] == params["OutOrderId"] for row in self.orders.values()):
            return {"success": False, "message": "订单已存在！"}
        trade_id = str(uuid.uuid4())
        self.orders[trade_id] = {"id": trade_id, "outOrderId": params["OutOrderId"], "orderUserKey": params["OrderUserKey"],
                                 "actualAmount": float(params["ActualAmount"]), "currency": params["Currency"],
                                 "amount": 4.16, "status": 0}
        return {"success": True, "message": "创建订单成功！", "data": f"{self.url}/Pay?Id={trade_id}",
                "info": {"ActualAmount": params["ActualAmount"], "Amount": "4.16", "BaseCurrency": "CNY", "Id": trade_id,
                         "OutOrderId": params["OutOrderId"], "ToAddress": "TKGTx4pCKiKQbk8evXHTborfZn754TGViP"}}
