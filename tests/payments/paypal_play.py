"""Playing PayPal: a loopback fake of api-m.paypal.com (OAuth, Orders v2, capture, refund, and the
signing certificate), webhooks signed as PayPal signs them with a test key and self-signed cert."""
from __future__ import annotations

import base64
import itertools
import json
import threading
import zlib
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler
from urllib.parse import urlsplit

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID
from django.test import Client

from kami.payments.gateways import paypal
from kami.payments.gateways.paypal import PayPalGateway
from kami.payments.services import gateway_configure
from tests.payments.epay_play import add_keys, create_order
from tests.loopback import LoopbackServer

CLIENT_ID = "AVkami-test-client-id-0123456789"
CLIENT_SECRET = "EKkami-test-client-secret-9876543210-do-not-log"
WEBHOOK_ID = "8PT597110X687430LKGECATA"
_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)


def make_cert(*, common_name: str = PayPalGateway.CERT_COMMON_NAME, days: int = 365, key=_KEY) -> bytes:
    """A self-signed certificate standing in for PayPal's messageverificationcerts one."""
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.now(timezone.utc)
    start, end = (now - timedelta(days=1), now + timedelta(days=days)) if days > 0 else (now - timedelta(days=30), now + timedelta(days=days))
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(start).not_valid_after(end)
            .sign(key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.PEM)


def enable_paypal(fake: "FakePayPal", **extra: str) -> None:
    gateway_configure(name="paypal", values={"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET,
                                             "webhook_id": WEBHOOK_ID, "api_base": fake.url, **extra},
                      enable=True, actor="test")


def paypal_order(client: Client, make_product, *, keys: int = 3, quantity: int = 1, currency: str = "USD", **product) -> dict:
    item = make_product(currency=currency, **product)
    add_keys(item, [f"KEY-{item.slug}-{i}" for i in range(keys)])
    return create_order(client, item, quantity=quantity, gateway="paypal")


def signed_headers(body: bytes, *, cert_url: str, webhook_id: str = WEBHOOK_ID, key=_KEY,
                   transmission_id: str = "69cd13f0-d67a-11e5-baa3-778b53f4ae55",
                   transmission_time: str = "2026-11-27T12:00:00Z") -> dict:
    """The PAYPAL-* headers as PayPal sends them, as Django test-client extras."""
    message = f"{transmission_id}|{transmission_time}|{webhook_id}|{zlib.crc32(body) & 0xFFFFFFFF}"
    sig = key.sign(message.encode(), padding.PKCS1v15(), hashes.SHA256())
    return {"HTTP_PAYPAL_TRANSMISSION_ID": transmission_id, "HTTP_PAYPAL_TRANSMISSION_TIME": transmission_time,
            "HTTP_PAYPAL_TRANSMISSION_SIG": base64.b64encode(sig).decode(), "HTTP_PAYPAL_CERT_URL": cert_url,
            "HTTP_PAYPAL_AUTH_ALGO": "SHA256withRSA"}


def capture_event(*, order_no: str, value: str, currency: str = "USD", capture_id: str = "2GG279541U471931P",
                  kind: str = "PAYMENT.CAPTURE.COMPLETED", status: str = "COMPLETED", event_id: str = "WH-58D329510W468432D-8HN650336L201105X") -> bytes:
    return json.dumps({
        "id": event_id, "event_version": "1.0", "create_time": "2026-11-27T12:00:00.000Z", "resource_type": "capture",
        "resource_version": "2.0", "event_type": kind, "summary": f"Payment {status.lower()} for {value} {currency}",
        "resource": {"id": capture_id, "status": status, "amount": {"currency_code": currency, "value": value},
                     "final_capture": True, "custom_id": order_no, "invoice_id": order_no,
                     "supplementary_data": {"related_ids": {"order_id": "5O190127TN364715T"}},
                     "create_time": "2026-11-27T11:59:58Z", "update_time": "2026-11-27T11:59:58Z"},
    }, indent=1).encode()


def send(client: Client, body: bytes, headers: dict, *, path: str = "/pay/paypal/notify"):
    return client.post(path, data=body, content_type="application/json", **headers)


@pytest.fixture
def fake_paypal(monkeypatch):
    """The fake, with the gateway class allowed to fetch certificates from it (plain http, loopback)."""
    fake = FakePayPal().start()
    monkeypatch.setattr(PayPalGateway, "ALLOWED_CERT_HOSTS", (urlsplit(fake.url).netloc,))
    monkeypatch.setattr(PayPalGateway, "CERT_SCHEMES", ("http",))
    forget_certificates()
    try:
        yield fake
    finally:
        fake.stop()
        forget_certificates()


def forget_certificates() -> None:
    """Empty the gateway's per-process caches: tokens, certificates, failed and counted fetches."""
    for cache in (paypal._tokens, paypal._certs, paypal._cert_failures, paypal._cert_fetches):
        cache.clear()


class FakePayPal(LoopbackServer):
    def __init__(self):
        self.mode = "normal"  # normal | error500 | refund_pending
        self.certs: dict[str, bytes] = {"CERT-good": make_cert()}
        self.orders: dict[str, dict] = {}
        self.refunds: list[dict] = []
        self.requests: list[dict] = []
        self.token_requests = 0
        self._seen: dict[str, tuple[int, dict]] = {}
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._serve(self._handler())

    def cert_url(self, name: str = "CERT-good") -> str:
        return f"{self.url}/v1/notifications/certs/{name}"

    def approve(self, order_id: str) -> None:
        self.orders[order_id]["status"] = "APPROVED"

    def answer(self, method: str, path: str, headers: dict, body: bytes) -> tuple[int, dict | bytes]:
        if path.startswith("/v1/notifications/certs/"):
            cert = self.certs.get(path.rsplit("/", 1)[1])
            return (200, cert) if cert else (404, {"name": "RESOURCE_NOT_FOUND"})
        if path == "/v1/oauth2/token":
            return self._token(headers, body)
        if headers.get("authorization") != "Bearer A21AAFake-token":
            return 401, {"error": "invalid_token"}
        if self.mode == "error500":
            return 500, {"name": "INTERNAL_SERVER_ERROR"}
        if method == "GET" and path.startswith("/v2/checkout/orders/"):
            found = self.orders.get(path.rsplit("/", 1)[1])
            return (200, found) if found else (404, {"name": "RESOURCE_NOT_FOUND"})
        request_id = headers.get("paypal-request-id")
        if method != "POST" or not request_id:
            return 400, {"name": "INVALID_REQUEST", "message": "the fake wants PayPal-Request-Id on every POST"}
        if request_id in self._seen:
            return self._seen[request_id]
        data = json.loads(body or b"{}")
        if path == "/v2/checkout/orders":
            result = self._create(data)
        elif path.startswith("/v2/checkout/orders/") and path.endswith("/capture"):
            result = self._capture(path.split("/")[4])
        elif path.startswith("/v2/payments/captures/") and path.endswith("/refund"):
            result = self._refund(path.split("/")[4], data)
        else:
            result = (404, {"name": "RESOURCE_NOT_FOUND"})
        self._seen[request_id] = result
        return result

    def _token(self, headers: dict, body: bytes) -> tuple[int, dict]:
        expected = "Basic " + base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()
        if headers.get("authorization") != expected or body != b"grant_type=client_credentials":
            return 401, {"error": "invalid_client", "error_description": "Client Authentication failed"}
        self.token_requests += 1
        return 200, {"scope": "https://uri.paypal.com/services/payments/payment", "access_token": "A21AAFake-token",
                     "token_type": "Bearer", "app_id": "APP-80W284485P519543T", "expires_in": 32400, "nonce": "n"}

    def _create(self, data: dict) -> tuple[int, dict]:
        order_id = f"5O1901{next(self._ids):04d}TN364715T"
        unit = data["purchase_units"][0]
        order = {"id": order_id, "intent": data["intent"], "status": "PAYER_ACTION_REQUIRED", "request": data,
                 "purchase_units": [{"reference_id": unit["reference_id"], "custom_id": unit["custom_id"],
                                     "amount": unit["amount"]}],
                 "links": [{"href": f"{self.url}/v2/checkout/orders/{order_id}", "rel": "self", "method": "GET"},
                           {"href": f"https://www.sandbox.paypal.com/checkoutnow?token={order_id}", "rel": "payer-action",
                            "method": "GET"}]}
        self.orders[order_id] = order
        return 200, order

    def _capture(self, order_id: str) -> tuple[int, dict]:
        order = self.orders.get(order_id)
        if order is None:
            return 404, {"name": "RESOURCE_NOT_FOUND"}
        if order["status"] != "APPROVED":
            return 422, {"name": "UNPROCESSABLE_ENTITY", "details": [{"issue": "ORDER_NOT_APPROVED"}]}
        unit = order["purchase_units"][0]
        capture = {"id": f"3C6790{next(self._ids):04d}N5128Y", "status": "COMPLETED", "amount": unit["amount"],
                   "custom_id": unit["custom_id"], "invoice_id": unit["custom_id"], "final_capture": True}
        order["status"] = "COMPLETED"
        unit["payments"] = {"captures": [capture]}
        return 201, order

    def _refund(self, capture_id: str, data: dict) -> tuple[int, dict]:
        captures = [c for o in self.orders.values() for c in o["purchase_units"][0].get("payments", {}).get("captures", [])]
        if capture_id not in {c["id"] for c in captures}:
            return 404, {"name": "RESOURCE_NOT_FOUND"}
        refund = {"id": f"1JU089{next(self._ids):04d}691411", "capture": capture_id, "amount": data.get("amount"),
                  "status": "PENDING" if self.mode == "refund_pending" else "COMPLETED"}
        self.refunds.append(refund)
        return 201, refund

    def _handler(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def _serve(self, method: str) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                path = urlsplit(self.path).path
                headers = {k.lower(): v for k, v in self.headers.items()}
                with fake._lock:
                    fake.requests.append({"method": method, "path": path, "headers": headers, "body": body})
                    status, answer = fake.answer(method, path, headers, body)
                data = answer if isinstance(answer, bytes) else json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/x-pem-file" if isinstance(answer, bytes) else "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):  # noqa: N802 (http.server's naming)
                self._serve("GET")

            def do_POST(self):  # noqa: N802
                self._serve("POST")

            def log_message(self, *args):
                pass

        return Handler
