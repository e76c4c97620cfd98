"""One player per gateway, in the shape the contract suite (test_gateway_contract.py) drives:
enable the gateway, sign a notification for (order, amount) exactly as the gateway does (or
forge one: same shape, the wrong key), and say what the protocol promises: the methods it
notifies with, its acknowledgement bodies, the field naming the merchant.

The signing itself is each gateway's own play module's; a player only adapts it. A `Sent`
travels through the test client (the notify view) or, as `Sent.inbound()`, straight into the
notification path as the plain values an edge hands it."""
from __future__ import annotations

import hashlib
import hmac
import json
from abc import ABC, abstractmethod
from dataclasses import dataclass, field, replace
from decimal import Decimal
from urllib.parse import urlencode

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from django.test import Client

from kami.core import money
from kami.core.inbound import Inbound
from kami.payments.registry import gateway_get
from kami.payments.services import gateway_configure
from tests.payments import alipay_play, epay_play, paypal_play, stripe_play, usdt_play, wechat_play
from tests.sandbox_play import enable_sandbox

FORGER_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)  # signs what no gateway signed
FORM = "application/x-www-form-urlencoded"


@dataclass(frozen=True)
class Sent:
    """One notification as it travels: what the client sends, byte for byte."""

    method: str
    path: str
    body: bytes = b""
    content_type: str = "application/json"
    headers: dict = field(default_factory=dict)  # as Django test-client extras (HTTP_…)
    query: str = ""

    def send(self, client: Client, *, method: str | None = None):
        path = f"{self.path}?{self.query}" if self.query else self.path
        return client.generic(method or self.method, path, data=self.body, content_type=self.content_type,
                              **self.headers)

    def inbound(self, *, case=str.title, method: str | None = None) -> Inbound:
        """The same notification as the plain values an edge hands the notification path, its
        header names written with `case` (HTTP names are case-insensitive)."""
        headers = {"Content-Type": self.content_type,
                   **{name.removeprefix("HTTP_").replace("_", "-"): value for name, value in self.headers.items()}}
        return Inbound(method=method or self.method, headers={case(name): value for name, value in headers.items()},
                       query=self.query, body=self.body, remote_addr="192.0.2.10")

    def cut(self) -> Sent:
        """The same notification cut off halfway: what a broken proxy or a truncated retry sends."""
        return replace(self, body=self.body[:len(self.body) // 2], query=self.query[:len(self.query) // 2])


@dataclass
class Player(ABC):
    name: str
    methods: tuple[str, ...]  # how the protocol notifies; any other method is refused
    ok: tuple[int, bytes]  # the acknowledgement of a notification taken (status, body)
    fail: tuple[int, bytes]  # … of one refused, so the gateway retries or gives up
    merchant_field: str | None = None  # the field naming the merchant, where the protocol has one
    currency: str = "CNY"

    @abstractmethod
    def enable(self, request: pytest.FixtureRequest) -> None:
        """Configure and enable the gateway for this test (fakes started through `request`)."""

    @abstractmethod
    def notification(self, *, order_no: str, amount: Decimal, trade_no: str, merchant: str | None = None,
                     forged: bool = False, method: str | None = None) -> Sent:
        """The gateway's notification that `order_no` was paid `amount` (forged: signed wrongly)."""


class SandboxPlayer(Player):
    def enable(self, request):
        enable_sandbox()

    def notification(self, *, order_no, amount, trade_no, merchant=None, forged=False, method=None):
        gw = gateway_get("sandbox")
        body = gw.notification_body(order_no=order_no, trade_no=trade_no, amount=str(amount), currency=self.currency)
        signature = hmac.new(b"not-the-secret", body, hashlib.sha256).hexdigest() if forged else gw.sign(body)
        return Sent("POST", "/pay/sandbox/notify", body, headers={"HTTP_X_SANDBOX_SIGNATURE": signature})


class EpayPlayer(Player):
    def enable(self, request):
        epay_play.enable_epay()

    def notification(self, *, order_no, amount, trade_no, merchant=None, forged=False, method=None):
        params = epay_play.paid_params(order_no=order_no, money=str(amount), trade_no=trade_no,
                                       pid=merchant or epay_play.PID, key="forged-key-0000" if forged else epay_play.KEY)
        method = method or self.methods[0]
        if method == "GET":
            return Sent("GET", "/pay/epay/notify", query=urlencode(params), content_type=FORM)
        return Sent("POST", "/pay/epay/notify", urlencode(params).encode(), content_type=FORM)


class AlipayPlayer(Player):
    def enable(self, request):
        alipay_play.enable_alipay()

    def notification(self, *, order_no, amount, trade_no, merchant=None, forged=False, method=None):
        params = alipay_play.paid_params(order_no=order_no, total_amount=str(amount), trade_no=trade_no,
                                         app_id=merchant or alipay_play.APP_ID,
                                         key=FORGER_KEY if forged else alipay_play.ALIPAY_KEY)
        return Sent("POST", "/pay/alipay/notify", urlencode(params).encode(), content_type=f"{FORM}; charset=utf-8")


class WeChatPayPlayer(Player):
    def enable(self, request):
        wechat_play.enable_wechatpay()

    def notification(self, *, order_no, amount, trade_no, merchant=None, forged=False, method=None):
        resource = wechat_play.transaction(order_no=order_no, total=money.to_minor(amount, self.currency),
                                           mchid=merchant or wechat_play.MCHID, transaction_id=trade_no)
        body = wechat_play.encrypted_body(resource)
        headers = wechat_play.signed_headers(body, key=FORGER_KEY if forged else wechat_play.WECHAT_KEY)
        return Sent("POST", "/pay/wechatpay/notify", body,
                    headers={f"HTTP_{k.upper().replace('-', '_')}": v for k, v in headers.items()})


class StripePlayer(Player):
    def enable(self, request):
        # Notifications never call Stripe's API: no fake needed behind api_base.
        gateway_configure(name="stripe", values={"secret_key": stripe_play.SECRET_KEY, "webhook_secret":
                                                 stripe_play.WEBHOOK_SECRET}, enable=True, actor="test")

    def notification(self, *, order_no, amount, trade_no, merchant=None, forged=False, method=None):
        body = stripe_play.session_event(order_no=order_no, amount_total=money.to_minor(amount, self.currency),
                                         currency=self.currency.lower(), intent=f"pi_{trade_no}",
                                         session_id=f"cs_{trade_no}", event_id=f"evt_{trade_no}")
        header = stripe_play.signature(body, secret="whsec_forged" if forged else stripe_play.WEBHOOK_SECRET)
        return Sent("POST", "/pay/stripe/notify", body, content_type="application/json; charset=utf-8",
                    headers={"HTTP_STRIPE_SIGNATURE": header})


class PayPalPlayer(Player):
    def enable(self, request):
        self.fake = request.getfixturevalue("fake_paypal")
        paypal_play.enable_paypal(self.fake)

    def notification(self, *, order_no, amount, trade_no, merchant=None, forged=False, method=None):
        body = paypal_play.capture_event(order_no=order_no, value=str(amount), currency=self.currency,
                                         capture_id=trade_no, event_id=f"WH-{trade_no}")
        headers = paypal_play.signed_headers(body, cert_url=self.fake.cert_url(),
                                             key=FORGER_KEY if forged else paypal_play._KEY)
        return Sent("POST", "/pay/paypal/notify", body, headers=headers)


class UsdtPlayer(Player):
    """Epusdt and TokenPay: signed JSON, an MD5 token the merchant shares with its own instance."""

    def enable(self, request):
        enable = usdt_play.enable_epusdt if self.name == "epusdt" else usdt_play.enable_tokenpay
        enable("http://127.0.0.1:9")  # the API is never called for a notification

    def notification(self, *, order_no, amount, trade_no, merchant=None, forged=False, method=None):
        sign = usdt_play.epusdt_notice if self.name == "epusdt" else usdt_play.tokenpay_notice
        token = usdt_play.EPUSDT_TOKEN if self.name == "epusdt" else usdt_play.TOKENPAY_TOKEN
        fields = sign(order_no=order_no, amount=str(amount), trade_id=trade_no, token="forged-token" if forged else token)
        return Sent("POST", f"/pay/{self.name}/notify", usdt_play.to_json(fields))


class TelegramStarsPlayer(Player):
    """Telegram Stars: the notification is the bot's successful_payment update, authenticated by
    the secret-token header Telegram sends with every update (tests/telegram has the bot's side)."""

    TOKEN = "7012345678:AAH-stars-bot-token-0123456789abcdef"

    def enable(self, request):
        gateway_configure(name="stars", values={"stars_per_unit": "7", "bot_token": self.TOKEN}, enable=True,
                          actor="test")

    def notification(self, *, order_no, amount, trade_no, merchant=None, forged=False, method=None):
        from kami.payments.gateways.telegram_stars import stars_for, webhook_secret
        from tests.telegram.bot_play import paid_update

        update = paid_update(user_id=555, payload=f"{order_no}|{amount}|{self.currency}",
                             total=stars_for(Decimal(amount), Decimal(7)), charge_id=trade_no)
        secret = webhook_secret("7012345678:AAH-forged" if forged else self.TOKEN)
        return Sent("POST", "/pay/stars/notify", json.dumps(update).encode(),
                    headers={"HTTP_X_TELEGRAM_BOT_API_SECRET_TOKEN": secret})


TEXT_FAIL = (400, b"fail")
PLAYERS: dict[str, Player] = {p.name: p for p in [
    SandboxPlayer("sandbox", ("POST",), ok=(200, b"ok"), fail=TEXT_FAIL),
    EpayPlayer("epay", ("GET", "POST"), ok=(200, b"success"), fail=TEXT_FAIL, merchant_field="pid"),
    AlipayPlayer("alipay", ("POST",), ok=(200, b"success"), fail=TEXT_FAIL, merchant_field="app_id"),
    WeChatPayPlayer("wechatpay", ("POST",), ok=(204, b""), merchant_field="mchid",
                    fail=(400, b'{"code": "FAIL", "message": "rejected or not processed; see the shop\'s notification log"}')),
    StripePlayer("stripe", ("POST",), ok=(200, b"ok"), fail=TEXT_FAIL),
    PayPalPlayer("paypal", ("POST",), ok=(200, b"ok"), fail=TEXT_FAIL),
    UsdtPlayer("epusdt", ("POST",), ok=(200, b"ok"), fail=TEXT_FAIL),
    UsdtPlayer("tokenpay", ("POST",), ok=(200, b"ok"), fail=TEXT_FAIL),
    TelegramStarsPlayer("stars", ("POST",), ok=(200, b""), fail=(400, b"retry")),
]}
