"""Playing Stripe: a loopback fake of api.stripe.com (Checkout Sessions, refunds), webhook events
built and signed exactly as Stripe signs them, and Kami configured to talk to the fake."""
from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import threading
import time
from http.server import BaseHTTPRequestHandler
from urllib.parse import parse_qsl, urlsplit

import pytest
from django.test import Client

from kami.payments.services import gateway_configure
from tests.payments.epay_play import add_keys, create_order
from tests.loopback import LoopbackServer

SECRET_KEY = "sk_test_51Kami0000000000000000000000000000000000000000000000000000000"
WEBHOOK_SECRET = "whsec_kami_test_0123456789abcdef0123456789abcdef"


def enable_stripe(fake: "FakeStripe", *, secret_key: str = SECRET_KEY, webhook_secret: str = WEBHOOK_SECRET) -> None:
    gateway_configure(name="stripe", values={"secret_key": secret_key, "webhook_secret": webhook_secret,
                                             "api_base": fake.url}, enable=True, actor="test")


def stripe_order(client: Client, make_product, *, keys: int = 3, quantity: int = 1, currency: str = "USD", **product) -> dict:
    item = make_product(currency=currency, **product)
    add_keys(item, [f"KEY-{item.slug}-{i}" for i in range(keys)])
    return create_order(client, item, quantity=quantity, gateway="stripe")


def signature(body: bytes, *, secret: str = WEBHOOK_SECRET, timestamp: int | None = None) -> str:
    """`Stripe-Signature` as Stripe computes it: t=<unix>,v1=hex(HMAC-SHA256(secret, f"{t}.{body}"))."""
    t = int(time.time()) if timestamp is None else timestamp
    mac = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={t},v1={mac}"


def session_event(*, order_no: str, amount_total: int, currency: str = "usd", kind: str = "checkout.session.completed",
                  payment_status: str = "paid", session_id: str = "cs_test_a1B2c3", intent: str | None = "pi_3Kami0001",
                  event_id: str = "evt_1Kami0001") -> bytes:
    """A Checkout Session event as Stripe sends it (trimmed to the fields that matter, same shape)."""
    return json.dumps({
        "id": event_id, "object": "event", "api_version": "2025-09-30.clover", "created": int(time.time()),
        "livemode": False, "pending_webhooks": 1, "type": kind,
        "request": {"id": None, "idempotency_key": None},
        "data": {"object": {
            "id": session_id, "object": "checkout.session", "mode": "payment", "amount_subtotal": amount_total,
            "amount_total": amount_total, "currency": currency, "client_reference_id": order_no,
            "metadata": {"order_no": order_no}, "payment_intent": intent, "payment_status": payment_status,
            "status": "complete" if payment_status == "paid" else "open", "customer_details": {"email": "buyer@example.com"},
        }},
    }, indent=2).encode()


def send(client: Client, body: bytes, header: str | None = None, *, path: str = "/pay/stripe/notify"):
    extra = {} if header == "" else {"HTTP_STRIPE_SIGNATURE": signature(body) if header is None else header}
    return client.post(path, data=body, content_type="application/json; charset=utf-8", **extra)


@pytest.fixture
def fake_stripe():
    fake = FakeStripe(secret_key=SECRET_KEY).start()
    try:
        yield fake
    finally:
        fake.stop()


class FakeStripe(LoopbackServer):
    """api.stripe.com on 127.0.0.1: checks the Bearer key and requires an Idempotency-Key on every
    POST, answering a repeated key with the first answer (and a changed body with an error), as Stripe does."""

    def __init__(self, *, secret_key: str):
        self.secret_key = secret_key
        self.mode = "normal"  # normal | error500 | refund_pending
        self.sessions: dict[str, dict] = {}
        self.refunds: list[dict] = []
        self.expired: list[str] = []  # ids of the sessions expired through the API
        self.requests: list[dict] = []  # {"method", "path", "headers", "form"}
        self._seen: dict[str, tuple[str, int, dict]] = {}  # idempotency key -> (body, status, answer)
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._serve(self._handler())

    def pay(self, session_id: str) -> dict:
        """The buyer pays on the hosted page: the session completes with a PaymentIntent."""
        session = self.sessions[session_id]
        session.update(payment_status="paid", status="complete", payment_intent=f"pi_3Fake{next(self._ids):04d}")
        return session

    def answer(self, method: str, path: str, headers: dict, body: str) -> tuple[int, dict]:
        if headers.get("authorization") != f"Bearer {self.secret_key}":
            return 401, _error("invalid_request_error", "Invalid API Key provided: sk_test_****")
        if self.mode == "error500":
            return 500, _error("api_error", "Something went wrong on Stripe's end.")
        form = dict(parse_qsl(body, keep_blank_values=True))
        if method == "GET" and path.startswith("/v1/checkout/sessions/"):
            session = self.sessions.get(path.rsplit("/", 1)[1])
            return (200, session) if session else (404, _error("invalid_request_error", "No such checkout.session",
                                                                code="resource_missing"))
        key = headers.get("idempotency-key")
        if method != "POST" or not key:
            return 400, _error("invalid_request_error", "the fake wants an Idempotency-Key on every POST")
        if key in self._seen:
            first_body, status, answer = self._seen[key]
            if first_body != body:
                return 400, _error("idempotency_error", "Keys for idempotent requests can only be used with the same parameters")
            return status, answer
        if path == "/v1/checkout/sessions":
            status, answer = self._create_session(form)
        elif path == "/v1/refunds":
            status, answer = self._refund(form)
        elif path.startswith("/v1/checkout/sessions/") and path.endswith("/expire"):
            status, answer = self._expire(path.split("/")[4])
        else:
            status, answer = 404, _error("invalid_request_error", f"Unrecognized request URL (POST: {path})")
        self._seen[key] = (body, status, answer)
        return status, answer

    def _create_session(self, form: dict) -> tuple[int, dict]:
        session_id = f"cs_test_fake{next(self._ids):04d}"
        quantity = int(form["line_items[0][quantity]"])
        session = {
            "id": session_id, "object": "checkout.session", "mode": form["mode"],
            "url": f"https://checkout.stripe.com/c/pay/{session_id}",
            "amount_total": int(form["line_items[0][price_data][unit_amount]"]) * quantity,
            "currency": form["line_items[0][price_data][currency]"],
            "client_reference_id": form.get("client_reference_id"),
            "metadata": {"order_no": form.get("metadata[order_no]", "")},
            "payment_intent": None, "payment_status": "unpaid", "status": "open",
            "expires_at": int(form["expires_at"]) if "expires_at" in form else int(time.time()) + 86400,
        }
        self.sessions[session_id] = session
        return 200, session

    def _expire(self, session_id: str) -> tuple[int, dict]:
        session = self.sessions.get(session_id)
        if session is None:
            return 404, _error("invalid_request_error", f"No such checkout.session: '{session_id}'", code="resource_missing")
        if session["status"] != "open":
            return 400, _error("invalid_request_error",
                               'Only Checkout Sessions with a status in ["open"] can be expired.')
        session.update(status="expired", url=None)
        self.expired.append(session_id)
        return 200, session

    def _refund(self, form: dict) -> tuple[int, dict]:
        intents = {s["payment_intent"]: s for s in self.sessions.values() if s["payment_intent"]}
        session = intents.get(form.get("payment_intent"))
        if session is None:
            return 404, _error("invalid_request_error", f"No such payment_intent: '{form.get('payment_intent')}'",
                               code="resource_missing")
        amount = int(form.get("amount", session["amount_total"]))
        if amount > session["amount_total"] - sum(r["amount"] for r in self.refunds if r["payment_intent"] == session["payment_intent"]):
            return 400, _error("invalid_request_error", "Refund amount is greater than unrefunded amount on charge",
                               code="amount_too_large")
        refund = {"id": f"re_fake{next(self._ids):04d}", "object": "refund", "amount": amount,
                  "currency": session["currency"], "payment_intent": session["payment_intent"],
                  "status": "pending" if self.mode == "refund_pending" else "succeeded",
                  "metadata": {k[9:-1]: v for k, v in form.items() if k.startswith("metadata[")}}
        self.refunds.append(refund)
        return 200, refund

    def _handler(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def _serve(self, method: str) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length).decode() if length else ""
                path = urlsplit(self.path).path
                headers = {k.lower(): v for k, v in self.headers.items()}
                with fake._lock:
                    fake.requests.append({"method": method, "path": path, "headers": headers,
                                          "form": dict(parse_qsl(body, keep_blank_values=True))})
                    status, answer = fake.answer(method, path, headers, body)
                data = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.send_header("Request-Id", "req_fake")
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):  # noqa: N802 (http.server's naming)
                self._serve("GET")

            def do_POST(self):  # noqa: N802
                self._serve("POST")

            def log_message(self, *args):
                pass

        return Handler


def _error(kind: str, message: str, *, code: str | None = None) -> dict:
    return {"error": {"type": kind, "message": message, **({"code": code} if code else {})}}
