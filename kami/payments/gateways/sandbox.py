"""The sandbox gateway: for the local demo and tests, never for production.

Its "payment page" is served by Kami itself (storefront `sandbox-checkout`) with a button that
simulates the payment. The notification is JSON signed like a real webhook:
`X-Sandbox-Signature: hex(HMAC-SHA256(secret, raw body))`, with a timestamp checked within
±5 minutes. An empty secret fails every notification.
"""
from __future__ import annotations

import hashlib
import hmac
import json
from decimal import Decimal
from urllib.parse import urlencode

from django.urls import reverse
from django.utils.translation import gettext_lazy as _

from kami.core import clock, money
from kami.core.errors import BadInput, VerificationFailed
from kami.payments.interface import Gateway, Inbound, Notice, OrderInfo, PaymentAction, RefundResult, Reply, Urls
from kami.payments.toolkit import text_reply

SIGNATURE_HEADER = "X-Sandbox-Signature"
WINDOW_SECONDS = 300


class SandboxGateway(Gateway):
    name = "sandbox"
    label = _("Sandbox (demo)")
    verifies_offline = True
    optional_config = ()  # no settings besides the secret: anything else is a typo
    required_secrets = ("secret",)
    redact_fields = ()

    def create_payment(self, order: OrderInfo, urls: Urls) -> PaymentAction:
        base = urls.notify.rsplit("/pay/", 1)[0]
        query = urlencode({"amount": str(order.amount), "currency": order.currency, "return": urls.ret})
        return PaymentAction(type="redirect", url=f"{base}{reverse('sandbox-checkout', args=[order.order_no])}?{query}")

    def sign(self, body: bytes) -> str:
        return hmac.new(self.secrets.get("secret", "").encode(), body, hashlib.sha256).hexdigest()

    def notification_body(self, *, order_no: str, trade_no: str, amount: str, currency: str, status: str = "paid",
                          timestamp: int | None = None) -> bytes:
        return json.dumps({"order_no": order_no, "trade_no": trade_no, "amount": amount, "currency": currency,
                           "status": status, "timestamp": _now() if timestamp is None else timestamp},
                          separators=(",", ":")).encode()

    def parse_notification(self, inbound: Inbound) -> Notice:
        secret = self.secrets.get("secret", "")
        given = inbound.headers.get(SIGNATURE_HEADER, "")
        if not secret:
            raise VerificationFailed("sandbox secret is empty: run `kami gateway set sandbox --enable`")
        # As bytes: compare_digest refuses non-ASCII str, and a header is whatever the sender put there.
        if not given or not hmac.compare_digest(self.sign(inbound.body).encode(), given.encode("utf-8", "replace")):
            raise VerificationFailed("bad signature")
        try:
            data = json.loads(inbound.body)
            amount = money.parse_amount(data["amount"])
            currency = money.parse_currency(data["currency"])
            stamp = data["timestamp"]
            fields = [data["order_no"], data["trade_no"], data["status"]]
        except (ValueError, KeyError, TypeError, BadInput) as exc:
            raise VerificationFailed(f"malformed notification: {exc}") from None
        if not all(isinstance(f, str) and f for f in fields) or not isinstance(stamp, int):
            raise VerificationFailed("malformed notification: order_no, trade_no, status must be text")
        if abs(_now() - stamp) > WINDOW_SECONDS:
            raise VerificationFailed("timestamp outside the 5-minute window (replayed or clock skew)")
        return Notice(order_no=fields[0], trade_no=fields[1], amount=Decimal(amount), currency=currency,
                      paid=fields[2] == "paid", raw=data)

    supports_refund = True

    def refund(self, *, order: OrderInfo, trade_no: str, amount: Decimal, refund_no: str, reason: str = "") -> RefundResult:
        """The sandbox moves no money: a refund always succeeds, under our own refund number."""
        return RefundResult(refund_no=refund_no, gateway_ref=f"SBX-{refund_no}")

    def acknowledge(self, ok: bool) -> Reply:
        return text_reply(ok, success="ok")


def _now() -> int:
    """Unix seconds by the one clock (`kami.core.clock`), so a test that moves it moves the window."""
    return int(clock.now().timestamp())
