"""Playing WeChat Pay v3: its public key pair and the merchant's, notifications encrypted and
signed exactly as WeChat does, and a loopback fake of the API that checks our Authorization
signatures and signs its answers with Wechatpay-* headers."""
from __future__ import annotations

import base64
import json
import re
import secrets
import time
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from django.test import Client

from kami.core import clock
from kami.payments.gateways.wechatpay import request_message, rsa_sign, rsa_verify, wechatpay_message
from kami.payments.services import gateway_configure
from tests.payments.alipay_play import private_pem, public_pem
from tests.payments.epay_play import (add_keys, create_order, last_notification, nothing_delivered,  # noqa: F401
                                      payments_of, stored_text)
from tests.loopback import LoopbackServer

MCHID = "1900000109"
APPID = "wxd678efh567hg6787"
SERIAL_NO = "5157F09EFDC096DE15EBE81A47057A7232F1B8E1"
PUB_KEY_ID = "PUB_KEY_ID_0114232134912410000000000000000"
APIV3_KEY = "a7cde1ZJB1kG2e7VfTs3jQzaWizur8Gb"
FIXTURES = Path(__file__).parent / "fixtures"
WECHAT_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)  # plays WeChat Pay
MERCHANT_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
_AUTH_RE = re.compile(r'(\w+)="([^"]*)"')


def fixture(name: str) -> dict:
    return json.loads((FIXTURES / f"{name}.json").read_text(encoding="utf-8"))


def enable_wechatpay(**values: str) -> None:
    values = {"mchid": MCHID, "appid": APPID, "serial_no": SERIAL_NO, "public_key_id": PUB_KEY_ID,
              "merchant_private_key": private_pem(MERCHANT_KEY), "wechatpay_public_key": public_pem(WECHAT_KEY),
              "apiv3_key": APIV3_KEY, **values}
    gateway_configure(name="wechatpay", values=values, enable=True, actor="test")


def stocked_order(client: Client, make_product, *, keys: int = 3, quantity: int = 1, **product) -> dict:
    item = make_product(**product)
    add_keys(item, [f"KEY-{item.slug}-{i}" for i in range(keys)])
    return create_order(client, item, quantity=quantity, gateway="wechatpay")


def transaction(*, order_no: str, total: int, state: str = "SUCCESS", currency: str = "CNY", mchid: str = MCHID,
                appid: str = APPID, transaction_id: str | None = None) -> dict:
    return {"mchid": mchid, "appid": appid, "out_trade_no": order_no,
            "transaction_id": transaction_id or f"42000019{order_no[-12:]}", "trade_type": "NATIVE",
            "trade_state": state, "trade_state_desc": "支付成功", "bank_type": "OTHERS", "attach": "",
            "success_time": "2026-11-27T12:00:05+08:00", "payer": {"openid": "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"},
            "amount": {"total": total, "payer_total": total, "currency": currency, "payer_currency": currency}}


def encrypted_body(resource: dict, *, apiv3_key: str = APIV3_KEY, event: str = "TRANSACTION.SUCCESS") -> bytes:
    nonce = secrets.token_urlsafe(9)[:12]
    ciphertext = AESGCM(apiv3_key.encode()).encrypt(nonce.encode(), json.dumps(resource, ensure_ascii=False).encode(),
                                                    b"transaction")
    return json.dumps({"id": "EV-2018022511223320873", "create_time": "2026-11-27T12:00:06+08:00",
                       "resource_type": "encrypt-resource", "event_type": event, "summary": "支付成功",
                       "resource": {"original_type": "transaction", "algorithm": "AEAD_AES_256_GCM",
                                    "ciphertext": base64.b64encode(ciphertext).decode(), "associated_data": "transaction",
                                    "nonce": nonce}}, ensure_ascii=False).encode()


def signed_headers(body: bytes, *, key=WECHAT_KEY, ts: int | None = None, serial: str = PUB_KEY_ID) -> dict:
    stamp, nonce = str(int(time.time()) if ts is None else ts), secrets.token_hex(16).upper()
    return {"Wechatpay-Timestamp": stamp, "Wechatpay-Nonce": nonce, "Wechatpay-Serial": serial,
            "Wechatpay-Signature": rsa_sign(key, wechatpay_message(stamp, nonce, body)),
            "Wechatpay-Signature-Type": "WECHATPAY2-SHA256-RSA2048"}


def notify(client: Client, body: bytes, headers: dict, *, path: str = "/pay/wechatpay/notify"):
    return client.post(path, data=body, content_type="application/json", headers=headers)


class FakeWeChatPay(LoopbackServer):
    """A loopback api.mch.weixin.qq.com. `trades` is what the query answers per out_trade_no;
    `mode`: normal | error500 | drop | bad_sign | wrong_serial | busy."""

    def __init__(self):
        self.trades: dict[str, dict] = {}
        self.refunds: list[dict] = []
        self.closed: list[str] = []  # out_trade_no of each transaction closed
        self.received: list[tuple[str, str, bytes]] = []  # method, path, body
        self.mode = "normal"
        self._serve(self._handler())

    def authorized(self, method: str, path: str, body: bytes, header: str) -> bool:
        if not header.startswith("WECHATPAY2-SHA256-RSA2048 "):
            return False
        fields = dict(_AUTH_RE.findall(header))
        if fields.get("mchid") != MCHID or fields.get("serial_no") != SERIAL_NO:
            return False
        message = request_message(method, path, fields.get("timestamp", ""), fields.get("nonce_str", ""), body)
        return rsa_verify(MERCHANT_KEY.public_key(), message, fields.get("signature", ""))

    def answer(self, method: str, path: str, body: bytes) -> tuple[int, dict | None]:
        parts = urlsplit(path)
        if self.mode == "busy":
            return 500, {"code": "SYSTEM_ERROR", "message": "系统繁忙"}
        if method == "POST" and parts.path == "/v3/pay/transactions/native":
            data = json.loads(body)
            return 200, {"code_url": f"weixin://wxpay/bizpayurl?pr={data['out_trade_no'][-8:]}"}
        if method == "GET" and parts.path.startswith("/v3/pay/transactions/out-trade-no/"):
            if parse_qs(parts.query).get("mchid") != [MCHID]:
                return 400, {"code": "PARAM_ERROR", "message": "mchid"}
            trade = self.trades.get(unquote(parts.path.rsplit("/", 1)[1]))
            return (200, trade) if trade else (404, {"code": "ORDER_NOT_EXIST", "message": "订单不存在"})
        if method == "POST" and parts.path.startswith("/v3/pay/transactions/out-trade-no/") and parts.path.endswith("/close"):
            if json.loads(body) != {"mchid": MCHID}:
                return 400, {"code": "PARAM_ERROR", "message": "mchid"}
            out_trade_no = unquote(parts.path.split("/")[-2])
            trade = self.trades.get(out_trade_no)
            if trade is None:
                return 404, {"code": "ORDER_NOT_EXIST", "message": "订单不存在"}
            if trade["trade_state"] == "SUCCESS":
                return 400, {"code": "ORDERPAID", "message": "订单已支付"}
            if trade["trade_state"] == "CLOSED":
                return 400, {"code": "ORDER_CLOSED", "message": "订单已关闭"}
            trade["trade_state"] = "CLOSED"
            self.closed.append(out_trade_no)
            return 204, None
        if method == "POST" and parts.path == "/v3/refund/domestic/refunds":
            data = json.loads(body)
            self.refunds.append(data)
            return 200, {"refund_id": f"5030000{len(self.refunds)}", "out_refund_no": data["out_refund_no"],
                         "status": "PROCESSING", "amount": {**data["amount"], "payer_refund": data["amount"]["refund"]}}
        return 404, {"code": "NOT_FOUND", "message": "no such API"}

    def _handler(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def _serve(self, method: str):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                fake.received.append((method, self.path, body))
                if fake.mode == "drop":
                    self.close_connection = True
                    self.connection.close()
                    return
                if fake.mode == "error500":
                    status, data = 502, None
                elif not fake.authorized(method, self.path, body, self.headers.get("Authorization", "")):
                    status, data = 401, {"code": "SIGN_ERROR", "message": "签名错误"}
                else:
                    status, data = fake.answer(method, self.path, body)
                if status == 204:
                    content = b""
                else:
                    content = json.dumps(data, ensure_ascii=False).encode() if data is not None else b"<html>502</html>"
                # stamped with Kami's clock: the tests' "now", when they move it
                headers = signed_headers(content, key=MERCHANT_KEY if fake.mode == "bad_sign" else WECHAT_KEY,
                                         ts=int(clock.now().timestamp()),
                                         serial="PUB_KEY_ID_OTHER" if fake.mode == "wrong_serial" else PUB_KEY_ID)
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(content)))
                for name, value in headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(content)

            def do_GET(self):  # noqa: N802
                self._serve("GET")

            def do_POST(self):  # noqa: N802
                self._serve("POST")

            def log_message(self, *args):
                pass

        return Handler
