"""Playing Alipay: its key pair and the merchant's, notifications signed exactly as Alipay signs
them, and a loopback fake of `gateway.do` that checks our request signatures and signs its
answers over the raw `…_response` text (with `\\/` escapes, so re-serialising would not verify)."""
from __future__ import annotations

import json
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from urllib.parse import parse_qs, urlencode

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from django.test import Client

from kami.payments.gateways.alipay import alipay_notify_content, alipay_request_content, rsa2_sign, rsa2_verify
from kami.payments.services import gateway_configure
from tests.payments.epay_play import (add_keys, create_order, last_notification, nothing_delivered,  # noqa: F401
                                      payments_of, stored_text)
from tests.loopback import LoopbackServer

APP_ID = "2021004100000001"
SELLER_ID = "2088100000000001"
FIXTURES = Path(__file__).parent / "fixtures"
ALIPAY_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)  # plays Alipay
APP_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)  # the merchant's app key


def fixture(name: str) -> dict:
    return json.loads((FIXTURES / f"{name}.json").read_text(encoding="utf-8"))


def private_pem(key, *, pkcs1: bool = False) -> str:
    fmt = serialization.PrivateFormat.TraditionalOpenSSL if pkcs1 else serialization.PrivateFormat.PKCS8
    return key.private_bytes(serialization.Encoding.PEM, fmt, serialization.NoEncryption()).decode()


def public_pem(key) -> str:
    return key.public_key().public_bytes(serialization.Encoding.PEM,
                                         serialization.PublicFormat.SubjectPublicKeyInfo).decode()


def public_base64(key) -> str:
    """The public key as Alipay's console shows it: the base64 body alone, one line."""
    return "".join(public_pem(key).strip().splitlines()[1:-1])


def enable_alipay(**values: str) -> None:
    values = {"app_id": APP_ID, "app_private_key": private_pem(APP_KEY), "alipay_public_key": public_base64(ALIPAY_KEY),
              **values}
    gateway_configure(name="alipay", values=values, enable=True, actor="test")


def stocked_order(client: Client, make_product, *, keys: int = 3, quantity: int = 1, **product) -> dict:
    item = make_product(**product)
    add_keys(item, [f"KEY-{item.slug}-{i}" for i in range(keys)])
    return create_order(client, item, quantity=quantity, gateway="alipay")


def paid_params(*, order_no: str, total_amount: str, trade_no: str | None = None, status: str = "TRADE_SUCCESS",
                app_id: str = APP_ID, key=ALIPAY_KEY, **extra: str) -> dict:
    """A notification as Alipay builds it: fields, then sign over all but sign/sign_type/empty."""
    params = {"gmt_create": "2026-11-27 12:00:01", "charset": "utf-8", "seller_email": "shop@example.com",
              "subject": "测试商品", "buyer_id": "2088102000000002", "invoice_amount": total_amount,
              "notify_id": f"2026112700222120001{order_no[-8:]}",
              "fund_bill_list": '[{"amount":"%s","fundChannel":"ALIPAYACCOUNT"}]' % total_amount,
              "notify_type": "trade_status_sync", "trade_status": status, "receipt_amount": total_amount,
              "app_id": app_id, "buyer_pay_amount": total_amount, "seller_id": SELLER_ID,
              "gmt_payment": "2026-11-27 12:00:05", "notify_time": "2026-11-27 12:00:06", "version": "1.0",
              "out_trade_no": order_no, "total_amount": total_amount, "trade_no": trade_no or f"2026112722001{order_no[-10:]}",
              "auth_app_id": app_id, "point_amount": "0.00", **extra}
    params["sign"] = rsa2_sign(key, alipay_notify_content(params).encode())
    params["sign_type"] = "RSA2"
    return params


def notify(client: Client, params: dict | str, *, path: str = "/pay/alipay/notify"):
    """POST a notification as Alipay does: a dict is form-encoded, a str is sent as it is."""
    body = params if isinstance(params, str) else urlencode(params)
    return client.post(path, data=body, content_type="application/x-www-form-urlencoded; charset=utf-8")


class FakeAlipay(LoopbackServer):
    """A loopback `gateway.do`. `trades` holds what alipay.trade.query answers per out_trade_no;
    `mode` makes it misbehave: normal | error500 | drop | bad_sign | unsigned_refusal | busy."""

    def __init__(self):
        self.trades: dict[str, dict] = {}
        self.refunds: list[dict] = []
        self.closed: list[str] = []  # out_trade_no of each trade closed
        self.received: list[dict] = []  # request parameters, as received
        self.mode = "normal"
        self._serve(self._handler())

    @property
    def url(self) -> str:
        return f"{self.base_url}/gateway.do"

    def answer(self, params: dict) -> dict:
        method = params.get("method", "")
        if not rsa2_verify(APP_KEY.public_key(), alipay_request_content(params).encode(), params.get("sign", "")):
            return {"code": "40002", "msg": "Invalid Arguments", "sub_code": "isv.invalid-signature", "sub_msg": "验签出错"}
        if params.get("app_id") != APP_ID:
            return {"code": "40002", "msg": "Invalid Arguments", "sub_code": "isv.invalid-app-id", "sub_msg": "无效的AppID参数"}
        if self.mode == "busy":
            return {"code": "40004", "msg": "Business Failed", "sub_code": "ACQ.SYSTEM_ERROR", "sub_msg": "系统错误"}
        biz = json.loads(params["biz_content"])
        if method == "alipay.trade.precreate":
            return {"code": "10000", "msg": "Success", "out_trade_no": biz["out_trade_no"],
                    "qr_code": f"https://qr.alipay.com/bax0{biz['out_trade_no'][-8:]}"}
        if method == "alipay.trade.query":
            trade = self.trades.get(biz.get("out_trade_no", ""))
            if trade is None:
                return {"code": "40004", "msg": "Business Failed", "sub_code": "ACQ.TRADE_NOT_EXIST", "sub_msg": "交易不存在"}
            return {"code": "10000", "msg": "Success", "buyer_logon_id": "bu***@example.com", **trade}
        if method == "alipay.trade.refund":
            repeat = any(r["out_request_no"] == biz["out_request_no"] for r in self.refunds)
            self.refunds.append(biz)
            return {"code": "10000", "msg": "Success", "out_trade_no": biz["out_trade_no"],
                    "trade_no": biz.get("trade_no", ""), "refund_fee": biz["refund_amount"],
                    "fund_change": "N" if repeat else "Y"}
        if method == "alipay.trade.close":
            out_trade_no = biz.get("out_trade_no", "")
            trade = self.trades.get(out_trade_no)
            if trade is None:
                return {"code": "40004", "msg": "Business Failed", "sub_code": "ACQ.TRADE_NOT_EXIST", "sub_msg": "交易不存在"}
            if trade.get("trade_status") != "WAIT_BUYER_PAY":
                return {"code": "40004", "msg": "Business Failed", "sub_code": "ACQ.TRADE_STATUS_ERROR",
                        "sub_msg": "交易状态不合法"}
            trade["trade_status"] = "TRADE_CLOSED"
            self.closed.append(out_trade_no)
            return {"code": "10000", "msg": "Success", "out_trade_no": out_trade_no, "trade_no": trade.get("trade_no", "")}
        return {"code": "40004", "msg": "Business Failed", "sub_code": "isv.invalid-method"}

    def reply(self, method: str, data: dict) -> bytes:
        inner = json.dumps(data, ensure_ascii=False).replace("/", "\\/").encode()
        if self.mode == "unsigned_refusal":
            inner = b'{"code":"40002","msg":"Invalid Arguments","sub_code":"isv.invalid-app-id"}'
            return b'{"' + method.replace(".", "_").encode() + b'_response":' + inner + b"}"
        sign = rsa2_sign(ALIPAY_KEY if self.mode != "bad_sign" else APP_KEY, inner)
        return b'{"' + method.replace(".", "_").encode() + b'_response":' + inner + b',"sign":"' + sign.encode() + b'"}'

    def _handler(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (http.server's naming)
                length = int(self.headers.get("Content-Length") or 0)
                params = {k: v[-1] for k, v in parse_qs(self.rfile.read(length).decode(), keep_blank_values=True).items()}
                fake.received.append(params)
                if fake.mode == "drop":
                    self.close_connection = True
                    self.connection.close()
                    return
                if fake.mode == "error500":
                    status, body = 500, b"<html>502 Bad Gateway</html>"
                else:
                    status, body = 200, fake.reply(params.get("method", "unknown"), fake.answer(params))
                self.send_response(status)
                self.send_header("Content-Type", "text/html;charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        return Handler


@pytest.fixture
def fake_alipay():
    site = FakeAlipay().start()
    try:
        yield site
    finally:
        site.stop()
