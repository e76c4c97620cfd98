"""Stripe Checkout (hosted payment page) with signed webhooks.

The buyer is redirected to a Checkout Session's `url`; Stripe POSTs events to
`/pay/stripe/notify` with `Stripe-Signature: t=…,v1=HMAC-SHA256(whsec, f"{t}.{raw body}")`,
checked over the raw body with a 300 s tolerance (Stripe's default and recommendation) and at
most 60 s into the future; an event's `livemode` must match the secret_key (sk_live_ / sk_test_).
`checkout.session.completed` with `payment_status == "paid"` and
`checkout.session.async_payment_succeeded` pay the order; every other event is acknowledged
and ignored, so Stripe does not retry (and eventually disable) the endpoint over events Kami
does not act on. The module is not called `stripe`: that would shadow the SDK.

Amounts travel in minor units. Kami's exponent for a currency (`money.exponent`) must be the
one Stripe uses, or every amount would be off by a factor of 10 or 100: such currencies are
refused (`supports_currency`) rather than guessed at.
"""
from __future__ import annotations

import json
from datetime import timedelta
from decimal import Decimal
from typing import TYPE_CHECKING

from django.utils.translation import gettext_lazy as _

from kami.core import clock, money
from kami.core.errors import BadInput, KamiError, Retryable, VerificationFailed
from kami.payments.interface import Gateway, Inbound, Notice, OrderInfo, PaymentAction, RefundResult, Reply, Urls
from kami.payments.toolkit import text_reply, url_checked

if TYPE_CHECKING:
    import stripe  # imported where called: the SDK and `requests` cost every `kami` command ~0.1 s to load

API_BASE = "https://api.stripe.com"
SIGNATURE_HEADER = "Stripe-Signature"
TOLERANCE_SECONDS = 300
FUTURE_TOLERANCE_SECONDS = 60  # a signature dated ahead of our clock: at most this much skew
TIMEOUT_SECONDS = 10
PAID_EVENTS = ("checkout.session.completed", "checkout.session.async_payment_succeeded")
# Stripe accepts expires_at 30 minutes to 24 hours after creation; a minute of margin for the trip.
_EXPIRY_MIN, _EXPIRY_MAX = timedelta(minutes=31), timedelta(hours=23, minutes=59)
# docs.stripe.com/currencies: zero- and three-decimal currencies, and the special cases whose
# API amount does not follow their ISO exponent (refused: a wrong guess is a 100x charge).
_ZERO_DECIMAL = {"BIF", "CLP", "DJF", "GNF", "JPY", "KMF", "KRW", "MGA", "PYG", "RWF", "UGX", "VND", "VUV", "XAF",
                 "XOF", "XPF"}
_THREE_DECIMAL = {"BHD", "JOD", "KWD", "OMR", "TND"}
_SPECIAL = {"ISK", "HUF", "TWD", "UGX"}

_http_client: stripe.HTTPClient | None = None


def stripe_exponent(currency: str) -> int:
    code = currency.upper()
    return 0 if code in _ZERO_DECIMAL else 3 if code in _THREE_DECIMAL else 2


class StripeGateway(Gateway):
    name = "stripe"
    label = _("Card (Stripe)")
    verifies_offline = True
    notify_methods = ("POST",)
    required_config = ()
    optional_config = ("api_base",)
    required_secrets = ("secret_key", "webhook_secret")
    redact_fields = ()  # Stripe-Signature is an HMAC, no secret: kept so a row can be re-verified
    supports_refund = True
    supports_close = True

    def __init__(self, *, config: dict, secrets: dict):
        super().__init__(config=config, secrets=secrets)
        self.api_base = str(config.get("api_base") or API_BASE).rstrip("/")

    @classmethod
    def config_clean(cls, config: dict) -> dict:
        """Check settings as they are saved (`kami gateway set stripe …`)."""
        config = dict(config)
        if config.get("api_base"):
            config["api_base"] = url_checked(str(config["api_base"]).strip().rstrip("/"), gateway="stripe",
                                             setting="api_base", should=f"an address like {API_BASE}; leave it unset normally")
        return config

    def supports_currency(self, currency: str) -> bool:
        code = currency.upper()
        return code not in _SPECIAL and stripe_exponent(code) == money.exponent(code)

    # -- create -----------------------------------------------------------------------------

    def create_payment(self, order: OrderInfo, urls: Urls) -> PaymentAction:
        if not self.supports_currency(order.currency):
            raise BadInput(f"stripe: Kami cannot charge {order.currency} through Stripe (its minor unit differs)")
        params = {
            "mode": "payment",
            "line_items": [{"quantity": 1, "price_data": {
                "currency": order.currency.lower(), "unit_amount": money.to_minor(order.amount, order.currency),
                "product_data": {"name": order.subject or order.order_no}}}],
            "client_reference_id": order.order_no,
            "metadata": {"order_no": order.order_no},
            "payment_intent_data": {"metadata": {"order_no": order.order_no}},
            "success_url": urls.ret,
            "cancel_url": urls.ret,
        }
        if order.email:
            params["customer_email"] = order.email
        expires_at = _expires_at(order.expires_at)
        if expires_at:
            params["expires_at"] = expires_at
        session = self._call(f"create a Checkout Session for {order.order_no}",
                             lambda c: c.v1.checkout.sessions.create(params, {"idempotency_key": order.order_no}))
        if not getattr(session, "url", None) or not getattr(session, "id", None):
            raise KamiError(f"stripe: the Checkout Session for {order.order_no} came back without a url",
                            code="gateway_refused")
        return PaymentAction(type="redirect", url=session.url, gateway_ref=session.id)

    # -- notify -----------------------------------------------------------------------------

    def parse_notification(self, inbound: Inbound) -> Notice:
        secret = self._secret("webhook_secret")
        if not secret:
            raise VerificationFailed("stripe webhook_secret is empty: every notification is refused until "
                                     "`kami gateway set stripe webhook_secret=whsec_…` stores the endpoint's secret")
        _verify(inbound.body, inbound.headers.get(SIGNATURE_HEADER, ""), secret)
        try:
            event = json.loads(inbound.body)
            kind, obj = event["type"], event["data"]["object"]
            if not isinstance(kind, str) or not isinstance(obj, dict):
                raise TypeError("type and data.object")
        except (ValueError, KeyError, TypeError) as exc:
            raise VerificationFailed(f"malformed event: {type(exc).__name__} {str(exc)[:80]}") from None
        if obj.get("object") != "checkout.session":
            return _ignored(event, obj)  # acted on by nobody, whatever its mode
        self._same_mode(event)
        paid = kind in PAID_EVENTS and obj.get("payment_status") == "paid"
        return _session_notice(obj, paid=paid, raw=event, strict=paid)

    def acknowledge(self, ok: bool) -> Reply:
        return text_reply(ok, success="ok")

    def _same_mode(self, event: dict) -> None:
        """A test-mode event never pays a live shop (nor the reverse): the endpoints share a URL."""
        live = self._secret("secret_key").startswith(("sk_live_", "rk_live_"))
        if event.get("livemode") is not live:
            mode = "live" if live else "test"
            raise VerificationFailed(f"event livemode is {event.get('livemode')!r} but the secret_key is a {mode} key: "
                                     f"only {mode}-mode webhooks are accepted (check which Stripe endpoint points "
                                     "here, or `kami gateway set stripe secret_key=… webhook_secret=…`)")

    # -- query, refund ----------------------------------------------------------------------

    def query(self, order: OrderInfo) -> Notice | None:
        """The Checkout Session Kami created for `order` (its id is the order's gateway_ref)."""
        if not order.gateway_ref:
            return None
        try:
            session = self._call(f"query {order.order_no}", lambda c: c.v1.checkout.sessions.retrieve(order.gateway_ref))
        except _NotFound:
            return None
        data = session.to_dict()
        if _order_no(data) != order.order_no:
            raise KamiError(f"stripe query for {order.order_no}: session {order.gateway_ref} belongs to another order",
                            code="gateway_refused")
        try:
            return _session_notice(data, paid=data.get("payment_status") == "paid", raw=data, strict=True)
        except VerificationFailed as exc:
            raise KamiError(f"stripe query for {order.order_no}: {exc}", code="gateway_refused") from None

    def refund(self, *, order: OrderInfo, trade_no: str, amount: Decimal, refund_no: str, reason: str = "") -> RefundResult:
        if not trade_no.startswith("pi_"):
            raise KamiError(f"stripe: trade {trade_no} has no PaymentIntent; refund it in the Stripe dashboard",
                            code="refund_unsupported")
        params = {"payment_intent": trade_no, "amount": money.to_minor(amount, order.currency),
                  "metadata": {"order_no": order.order_no, "refund_no": refund_no, "reason": reason[:500]}}
        refund = self._call(f"refund {trade_no}", lambda c: c.v1.refunds.create(params, {"idempotency_key": refund_no}))
        status = getattr(refund, "status", "")
        if status in ("failed", "canceled"):
            raise KamiError(f"stripe refused refund {refund_no} of {trade_no}: status {status}", code="refund_failed")
        return RefundResult(refund_no=refund_no, gateway_ref=refund.id, done=status == "succeeded",
                            pending=status != "succeeded", raw=refund.to_dict())

    def close(self, *, order: OrderInfo) -> None:
        """Expire the order's Checkout Session (its gateway_ref) so the buyer can no longer pay it.
        No session, one Stripe does not know, one already expired or one complete is done: a
        session paid meanwhile is not an error here, the notification path flags that order."""
        session_id = order.gateway_ref
        if not session_id:
            return
        try:
            self._call(f"expire session {session_id} of {order.order_no}",
                       lambda c: c.v1.checkout.sessions.expire(session_id, {}, {"idempotency_key": f"expire-{session_id}"}))
            return
        except _NotFound:
            return
        except Retryable:
            raise
        except KamiError as refusal:
            # Stripe refuses to expire a session that is no longer open; ask what it is now.
            try:
                session = self._call(f"query session {session_id} of {order.order_no}",
                                     lambda c: c.v1.checkout.sessions.retrieve(session_id))
            except _NotFound:
                return
            if getattr(session, "status", None) in ("expired", "complete"):
                return
            raise refusal

    # -- plumbing ---------------------------------------------------------------------------

    def _secret(self, name: str) -> str:
        value = self.secrets.get(name, "")
        return value.strip() if isinstance(value, str) else ""

    def _call(self, what: str, call):
        """Run `call(client)`; Stripe's errors become Kami's: trouble is Retryable, a refusal
        is a KamiError naming the fix. Messages never carry the key (Stripe masks it too)."""
        key = self._secret("secret_key")
        if not key:
            raise KamiError("stripe secret_key is empty: `kami gateway set stripe secret_key=sk_…`", code="gateway_refused")
        import stripe

        client = stripe.StripeClient(key, base_addresses={"api": self.api_base}, http_client=_http(),
                                     max_network_retries=0)
        try:
            return call(client)
        except (stripe.APIConnectionError, stripe.RateLimitError, stripe.APIError) as exc:
            raise Retryable(f"stripe: could not {what}: {type(exc).__name__}; will retry") from None
        except stripe.AuthenticationError:
            raise KamiError(f"stripe: could not {what}: the secret_key was refused; "
                            "`kami gateway set stripe secret_key=sk_…`", code="gateway_refused") from None
        except stripe.InvalidRequestError as exc:
            if exc.http_status == 404:
                raise _NotFound() from None
            raise KamiError(f"stripe: could not {what}: {str(exc.user_message or exc)[:200]}", code="gateway_refused") from None
        except stripe.StripeError as exc:
            raise KamiError(f"stripe: could not {what}: {type(exc).__name__} {str(exc.user_message or '')[:200]}",
                            code="gateway_refused") from None


class _NotFound(Exception):
    pass


def _http() -> stripe.HTTPClient:
    """One HTTP client for the process (a requests session per thread), with a timeout far
    shorter than the SDK's 80 s. `requests` is the SDK's own default transport and dependency;
    its httpx client sends bodies in a way httpx deprecates."""
    import stripe

    global _http_client
    if _http_client is None:
        _http_client = stripe.RequestsClient(timeout=TIMEOUT_SECONDS)
    return _http_client


def _verify(body: bytes, header: str, secret: str) -> None:
    if not header:
        raise VerificationFailed("no Stripe-Signature header")
    import stripe

    try:
        stripe.WebhookSignature.verify_header(body, header, secret, tolerance=TOLERANCE_SECONDS)
    except stripe.SignatureVerificationError as exc:
        if "tolerance" in str(exc):
            raise VerificationFailed("timestamp older than 5 minutes (replayed, or clock skew)") from None
        raise VerificationFailed("bad signature") from None
    except (UnicodeDecodeError, TypeError, ValueError):  # a body or header that is not text
        raise VerificationFailed("bad signature") from None
    # The SDK bounds the past only: a signature dated ahead would stay replayable until then.
    stamps = [int(item[2:]) for item in header.split(",") if item.startswith("t=") and item[2:].isdigit()]
    if not stamps or max(stamps) > clock.now().timestamp() + FUTURE_TOLERANCE_SECONDS:
        raise VerificationFailed(f"timestamp more than {FUTURE_TOLERANCE_SECONDS} s in the future (forged, or clock skew)")


def _expires_at(expires_at) -> int | None:
    if expires_at is None:
        return None
    left = expires_at - clock.now()
    return int(expires_at.timestamp()) if _EXPIRY_MIN <= left <= _EXPIRY_MAX else None


def _order_no(obj: dict) -> str:
    ref = obj.get("client_reference_id")
    if not ref:
        ref = (obj.get("metadata") or {}).get("order_no")
    return ref if isinstance(ref, str) else ""


def _session_notice(obj: dict, *, paid: bool, raw: dict, strict: bool) -> Notice:
    """A Checkout Session as a Notice. `strict`: the money must be readable (a payment is applied)."""
    order_no, intent = _order_no(obj), obj.get("payment_intent")
    if isinstance(intent, dict):  # expanded
        intent = intent.get("id")
    trade_no = intent if isinstance(intent, str) and intent else obj.get("id")
    if not order_no or not isinstance(trade_no, str):
        raise VerificationFailed("malformed event: the session has no client_reference_id or id")
    units, currency = obj.get("amount_total"), obj.get("currency")
    try:
        currency = money.parse_currency(currency)
        if not isinstance(units, int) or isinstance(units, bool) or units < 0:
            raise BadInput(f"amount_total {str(units)[:20]!r} is not a whole number of minor units")
        if stripe_exponent(currency) != money.exponent(currency):
            raise BadInput(f"currency {currency} has a minor unit Kami does not share with Stripe")
        amount = money.from_minor(units, currency)
    except BadInput as exc:
        if strict:
            raise VerificationFailed(f"malformed event: {exc}") from None
        amount, currency = Decimal(0), str(currency or "")[:5].upper()
    return Notice(order_no=order_no, trade_no=trade_no, amount=amount, currency=currency, paid=paid, raw=raw)


def _ignored(event: dict, obj: dict) -> Notice:
    """An event about something other than a Checkout Session (a PaymentIntent, a refund…):
    acknowledged and recorded, never applied."""
    order_no = (obj.get("metadata") or {}).get("order_no") if isinstance(obj.get("metadata"), dict) else None
    event_id = event.get("id")
    return Notice(order_no=order_no[:64] if isinstance(order_no, str) and order_no else "-",
                  trade_no=event_id[:128] if isinstance(event_id, str) and event_id else "-",
                  amount=Decimal(0), currency="", paid=False, raw=event)
