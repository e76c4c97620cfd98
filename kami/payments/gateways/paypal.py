"""PayPal Checkout (Orders v2, intent CAPTURE) with offline-verified webhooks, over plain httpx.

The buyer approves a PayPal order at its `payer-action` link; the money moves only when the
order is captured. Kami captures when PayPal says the order was approved (webhook
`CHECKOUT.ORDER.APPROVED`) and, should that be lost, when reconciliation queries an approved
order; the capture's `PAYMENT.CAPTURE.COMPLETED` then arrives as a duplicate of the same trade.

Webhooks are verified offline (PayPal's own sample listener): SHA256withRSA over
`{transmission_id}|{transmission_time}|{webhook_id}|{crc32(raw body)}` with the certificate at
PAYPAL-CERT-URL, fetched only over https from PayPal's API hosts (`ALLOWED_CERT_HOSTS`, a class
attribute: merchant settings cannot widen it; the sandbox hosts only for an account whose
api_base is PayPal's sandbox), only on PayPal's certificate path (`CERT_PATH`), and only after
everything checkable without it passed. Certificates are cached; a failed fetch is remembered
for `CERT_FAILURE_SECONDS` and at most `CERT_FETCHES_PER_MINUTE` new URLs are fetched a minute,
so a flood of forgeries does not turn into a flood of fetches. No time window: PayPal documents
none and retries for three days; a replay can only repeat a capture id, which is applied once.
A certificate's validity (and its cache) is judged by the one clock, `kami.core.clock`.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import json
import logging
import re
import threading
import time
import zlib
from datetime import datetime
from decimal import Decimal
from urllib.parse import urlsplit

import httpx
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

from kami.core import clock, money
from kami.core.errors import BadInput, KamiError, Retryable, VerificationFailed
from kami.payments.interface import Gateway, Inbound, Notice, OrderInfo, PaymentAction, RefundResult, Reply, Urls
from kami.payments.toolkit import config_stripped, http_send, retry_on_trouble, text_reply, url_checked

log = logging.getLogger("kami.payments.paypal")

API_BASE = "https://api-m.paypal.com"
TIMEOUT_SECONDS = 10
CAPTURE_COMPLETED = "PAYMENT.CAPTURE.COMPLETED"
ORDER_APPROVED = "CHECKOUT.ORDER.APPROVED"
_ID_RE = re.compile(r"^[A-Za-z0-9-]{1,64}$")  # PayPal order/capture ids: safe in a URL path
_HEADERS = ("transmission-id", "transmission-time", "transmission-sig", "cert-url", "auth-algo")
_tokens: dict[tuple, tuple[str, float]] = {}  # (api_base, client_id, secret digest) -> (token, expiry)
_certs: dict[str, tuple[rsa.RSAPublicKey, datetime]] = {}  # cert URL -> (key, not valid after)
_cert_failures: dict[str, tuple[str, float]] = {}  # cert URL -> (why, monotonic time it may be tried again)
_cert_fetches: list[float] = []  # monotonic times of the uncached fetches in the last minute
CERT_FAILURE_SECONDS = 60
CERT_FETCHES_PER_MINUTE = 10
_lock = threading.Lock()


def _fetch_allowed(failed: tuple[str, float] | None) -> None:
    """Refuse (without fetching) a certificate URL that failed a moment ago, or any new fetch
    past the minute's budget. Called with `_lock` held."""
    clock = time.monotonic()
    if failed and failed[1] > clock:
        raise VerificationFailed(f"{failed[0]} (not fetched again for {CERT_FAILURE_SECONDS} s)")
    _cert_fetches[:] = [t for t in _cert_fetches if t > clock - 60]
    if len(_cert_fetches) >= CERT_FETCHES_PER_MINUTE:
        raise VerificationFailed(f"more than {CERT_FETCHES_PER_MINUTE} new signing certificates asked for in a "
                                 "minute: not fetched (PayPal retries the notification)")
    _cert_fetches.append(clock)


class PayPalGateway(Gateway):
    name = "paypal"
    label = "PayPal"  # the same in every language
    notify_methods = ("POST",)
    required_config = ("client_id", "webhook_id")
    optional_config = ("api_base",)
    required_secrets = ("client_secret",)
    redact_fields = ()  # the transmission headers are signatures, not secrets: kept for re-verification
    supports_refund = True
    # PayPal's currencies whose decimals match Kami's (HUF and TWD take no decimals at PayPal).
    currencies = ("AUD", "BRL", "CAD", "CHF", "CNY", "CZK", "DKK", "EUR", "GBP", "HKD", "ILS", "JPY", "MXN", "MYR",
                  "NOK", "NZD", "PHP", "PLN", "SEK", "SGD", "THB", "USD")
    # Where signing certificates may come from. Tests relax these by patching the class; no setting can.
    ALLOWED_CERT_HOSTS: tuple[str, ...] = ("api.paypal.com", "api.sandbox.paypal.com", "api-m.paypal.com",
                                           "api-m.sandbox.paypal.com")
    SANDBOX_CERT_HOSTS: tuple[str, ...] = ("api.sandbox.paypal.com", "api-m.sandbox.paypal.com")
    CERT_SCHEMES: tuple[str, ...] = ("https",)
    CERT_PATH = re.compile(r"^/v1/notifications/certs/[A-Za-z0-9._-]{1,128}$")
    CERT_COMMON_NAME = "messageverificationcerts.paypal.com"

    def __init__(self, *, config: dict, secrets: dict):
        super().__init__(config=config, secrets=secrets)
        self.api_base = str(config.get("api_base") or API_BASE).rstrip("/")
        self.client_id = str(config.get("client_id") or "").strip()
        self.webhook_id = str(config.get("webhook_id") or "").strip()
        self.sandbox = (urlsplit(self.api_base).hostname or "").endswith(".sandbox.paypal.com")

    @classmethod
    def config_clean(cls, config: dict) -> dict:
        """Check settings as they are saved (`kami gateway set paypal …`)."""
        config = config_stripped(config, ("client_id", "webhook_id", "api_base"))
        if config.get("api_base"):
            config["api_base"] = url_checked(config["api_base"].rstrip("/"), gateway="paypal", setting="api_base",
                                             should=f"{API_BASE} (live) or https://api-m.sandbox.paypal.com (sandbox)")
        if config.get("webhook_id") and not _ID_RE.match(config["webhook_id"]):
            raise BadInput(f"paypal: webhook_id {config['webhook_id']!r} should be the webhook's ID from the "
                           "PayPal developer dashboard (like 8PT597110X687430LKGECATA)")
        return config

    # -- create -----------------------------------------------------------------------------

    def create_payment(self, order: OrderInfo, urls: Urls) -> PaymentAction:
        currency = order.currency.upper()
        if not self.supports_currency(currency):
            raise BadInput(f"paypal does not take {currency} (or takes it with other decimals than Kami)")
        unit = {"reference_id": order.order_no, "custom_id": order.order_no, "invoice_id": order.order_no,
                "description": (order.subject or order.order_no)[:127],
                "amount": {"currency_code": currency, "value": format(money.quantize(order.amount, currency), "f")}}
        body = {"intent": "CAPTURE", "purchase_units": [unit], "payment_source": {"paypal": {"experience_context": {
            "return_url": urls.ret, "cancel_url": urls.ret, "user_action": "PAY_NOW", "shipping_preference": "NO_SHIPPING"}}}}
        data = self._api("POST", "/v2/checkout/orders", f"create an order for {order.order_no}", json_body=body,
                         request_id=order.order_no)
        links = {link.get("rel"): link.get("href") for link in data.get("links", []) if isinstance(link, dict)}
        url = links.get("payer-action") or links.get("approve")
        if not isinstance(url, str) or not url.startswith("https://") or not isinstance(data.get("id"), str):
            raise KamiError(f"paypal: the order for {order.order_no} came back without an approval link",
                            code="gateway_refused")
        return PaymentAction(type="redirect", url=url, gateway_ref=data["id"])

    # -- notify -----------------------------------------------------------------------------

    def parse_notification(self, inbound: Inbound) -> Notice:
        if not self.webhook_id:
            raise VerificationFailed("paypal webhook_id is empty: every notification is refused until "
                                     "`kami gateway set paypal webhook_id=…` stores the webhook's ID")
        headers = {name: inbound.headers.get(f"PAYPAL-{name}", "") for name in _HEADERS}
        try:  # read before the signature is checked (and nothing acted on): no fetch for a non-event
            event = json.loads(inbound.body)
            kind, resource = event["event_type"], event["resource"]
            if not isinstance(kind, str) or not isinstance(resource, dict):
                raise TypeError("event_type and resource")
        except (ValueError, KeyError, TypeError) as exc:
            raise VerificationFailed(f"malformed event: {type(exc).__name__} {str(exc)[:80]}") from None
        self._verify(inbound.body, headers)
        if kind == ORDER_APPROVED:
            return self._capture_approved(resource, event)
        if kind.startswith("PAYMENT.CAPTURE."):
            paid = kind == CAPTURE_COMPLETED and resource.get("status") == "COMPLETED"
            return _capture_notice(resource, paid=paid, raw=event, strict=paid)
        return _ignored(event, resource)

    def acknowledge(self, ok: bool) -> Reply:
        return text_reply(ok, success="ok")

    def _verify(self, body: bytes, headers: dict[str, str]) -> None:
        missing = [f"PAYPAL-{name.upper()}" for name in _HEADERS if not headers[name]]
        if missing:
            raise VerificationFailed(f"not signed: {', '.join(missing)} missing")
        if headers["auth-algo"] != "SHA256withRSA":
            raise VerificationFailed(f"unsupported PAYPAL-AUTH-ALGO {headers['auth-algo'][:30]!r}")
        try:
            signature = base64.b64decode(headers["transmission-sig"], validate=True)
        except (binascii.Error, ValueError):
            raise VerificationFailed("bad signature: PAYPAL-TRANSMISSION-SIG is not base64") from None
        message = "|".join((headers["transmission-id"], headers["transmission-time"], self.webhook_id,
                            str(zlib.crc32(body) & 0xFFFFFFFF)))
        key = self._cert_key(headers["cert-url"])
        try:
            key.verify(signature, message.encode("utf-8", "surrogatepass"), padding.PKCS1v15(), hashes.SHA256())
        except InvalidSignature:
            raise VerificationFailed("bad signature") from None

    def _cert_key(self, url: str) -> rsa.RSAPublicKey:
        """The public key of PayPal's signing certificate at `url`, from PayPal's hosts only."""
        parts = urlsplit(url)
        hosts = [h for h in self.ALLOWED_CERT_HOSTS if self.sandbox or h not in self.SANDBOX_CERT_HOSTS]
        if parts.scheme not in self.CERT_SCHEMES or parts.netloc.lower() not in hosts:
            raise VerificationFailed(f"PAYPAL-CERT-URL {url[:100]!r} is not on PayPal's API hosts over https "
                                     f"({'sandbox' if self.sandbox else 'live'} account)")
        if not self.CERT_PATH.match(parts.path) or parts.query or parts.fragment:
            raise VerificationFailed(f"PAYPAL-CERT-URL {url[:100]!r} is not on PayPal's certificate path")
        now = clock.now()  # certificate validity by the one clock (tests move it)
        with _lock:
            cached, failed = _certs.get(url), _cert_failures.get(url)
            if not (cached and cached[1] > now):
                _fetch_allowed(failed)
        if cached and cached[1] > now:
            return cached[0]
        try:
            key, not_after = self._cert_fetch(url, now)
        except VerificationFailed as exc:
            with _lock:
                if len(_cert_failures) > 256:
                    _cert_failures.clear()
                _cert_failures[url] = (str(exc), time.monotonic() + CERT_FAILURE_SECONDS)
            raise
        with _lock:
            if len(_certs) > 32:
                _certs.clear()
            _certs[url] = (key, not_after)
        return key

    def _cert_fetch(self, url: str, now: datetime) -> tuple[rsa.RSAPublicKey, datetime]:
        try:
            response = httpx.get(url, timeout=TIMEOUT_SECONDS, follow_redirects=False)
        except httpx.HTTPError as exc:
            raise VerificationFailed(f"could not fetch the signing certificate: {type(exc).__name__}") from None
        if response.status_code != 200:
            raise VerificationFailed(f"could not fetch the signing certificate: HTTP {response.status_code}")
        return self._cert_check(response.content, now)

    def _cert_check(self, pem: bytes, now: datetime) -> tuple[rsa.RSAPublicKey, datetime]:
        try:
            cert = x509.load_pem_x509_certificate(pem)  # the first (leaf) certificate of the chain
        except ValueError:
            raise VerificationFailed("the signing certificate is not a PEM certificate") from None
        names = [a.value for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
        if names != [self.CERT_COMMON_NAME]:
            raise VerificationFailed(f"the signing certificate is for {names!r}, not {self.CERT_COMMON_NAME}")
        if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
            raise VerificationFailed("the signing certificate is expired or not yet valid")
        key = cert.public_key()
        if not isinstance(key, rsa.RSAPublicKey):
            raise VerificationFailed("the signing certificate has no RSA key")
        return key, cert.not_valid_after_utc

    # -- capture, query, refund -------------------------------------------------------------

    def _capture_approved(self, resource: dict, event: dict) -> Notice:
        """Capture an approved order now; trouble leaves it to reconciliation (query captures too)."""
        units = resource.get("purchase_units") or [{}]
        order_no = units[0].get("custom_id") if isinstance(units[0], dict) else None
        order_id = resource.get("id")
        if not isinstance(order_no, str) or not order_no or not isinstance(order_id, str) or not _ID_RE.match(order_id):
            return _ignored(event, resource)
        try:
            return self._capture(order_id, order_no, raw=event)
        except KamiError as exc:
            log.warning("paypal: capture of approved order %s (%s) failed: %s", order_id, order_no[:64], exc)
            return Notice(order_no=order_no[:64], trade_no=order_id, amount=Decimal(0), currency="", paid=False, raw=event)

    def _capture(self, order_id: str, order_no: str, *, raw: dict | None = None) -> Notice:
        data = self._api("POST", f"/v2/checkout/orders/{order_id}/capture", f"capture {order_no}", json_body={},
                         request_id=f"{order_no}-capture")
        return self._order_notice(data, order_no, raw=raw)

    def _order_notice(self, data: dict, order_no: str, *, raw: dict | None = None) -> Notice:
        units = data.get("purchase_units") or [{}]
        unit = units[0] if isinstance(units[0], dict) else {}
        if unit.get("custom_id", order_no) != order_no:
            raise KamiError(f"paypal: order {data.get('id')} belongs to another order than {order_no}", code="gateway_refused")
        captures = (unit.get("payments") or {}).get("captures") or []
        if captures and isinstance(captures[0], dict):
            capture = {"custom_id": order_no, **captures[0]}
            try:
                return _capture_notice(capture, paid=capture.get("status") == "COMPLETED", raw=raw or data, strict=True)
            except VerificationFailed as exc:
                raise KamiError(f"paypal: {exc}", code="gateway_refused") from None
        return Notice(order_no=order_no, trade_no=str(data.get("id", ""))[:128], amount=Decimal(0), currency="",
                      paid=False, raw=raw or data)

    def query(self, order: OrderInfo) -> Notice | None:
        """The PayPal order Kami created (its id is the gateway_ref); an approved one is captured."""
        if not order.gateway_ref:
            return None
        if not _ID_RE.match(order.gateway_ref):
            raise KamiError(f"paypal: {order.order_no} has a malformed PayPal order id", code="gateway_refused")
        try:
            data = self._api("GET", f"/v2/checkout/orders/{order.gateway_ref}", f"query {order.order_no}")
        except _NotFound:
            return None
        if data.get("status") == "APPROVED":
            return self._capture(order.gateway_ref, order.order_no)
        return self._order_notice(data, order.order_no)

    def refund(self, *, order: OrderInfo, trade_no: str, amount: Decimal, refund_no: str, reason: str = "") -> RefundResult:
        if not _ID_RE.match(trade_no):
            raise KamiError(f"paypal: {trade_no[:64]!r} is not a PayPal capture id; refund it in PayPal", code="refund_unsupported")
        currency = order.currency.upper()
        body = {"amount": {"currency_code": currency, "value": format(money.quantize(amount, currency), "f")},
                "custom_id": refund_no[:127]}
        if reason:
            body["note_to_payer"] = reason[:255]
        try:
            data = self._api("POST", f"/v2/payments/captures/{trade_no}/refund", f"refund {trade_no}", json_body=body,
                             request_id=refund_no)
        except _NotFound:
            raise KamiError(f"paypal: capture {trade_no} not found; check it in PayPal", code="refund_failed") from None
        status = data.get("status")
        if status in ("FAILED", "CANCELLED"):
            raise KamiError(f"paypal refused refund {refund_no} of {trade_no}: status {status}", code="refund_failed")
        return RefundResult(refund_no=refund_no, gateway_ref=str(data.get("id", "")), done=status == "COMPLETED",
                            pending=status != "COMPLETED", raw=data)

    # -- plumbing ---------------------------------------------------------------------------

    def _api(self, method: str, path: str, what: str, *, json_body: dict | None = None, request_id: str = "") -> dict:
        headers = {"Authorization": f"Bearer {self._token()}", "Accept": "application/json"}
        if request_id:
            headers["PayPal-Request-Id"] = request_id
        response = http_send(method, self.api_base + path, what=f"paypal: could not {what}", timeout=TIMEOUT_SECONDS,
                             json=json_body, headers=headers, follow_redirects=False)
        if response.status_code == 401:
            self._forget_token()
            raise Retryable(f"paypal: could not {what}: the access token was refused; will retry with a new one")
        if response.status_code == 404:
            raise _NotFound()
        retry_on_trouble(response, what=f"paypal: could not {what}", also=(429,))
        data = _json(response)
        if response.status_code >= 300:
            detail = (data.get("details") or [{}])[0] if isinstance(data.get("details"), list) else {}
            issue = detail.get("issue") if isinstance(detail, dict) else None
            raise KamiError(f"paypal: could not {what}: {str(data.get('name', response.status_code))[:60]} "
                            f"{str(issue or data.get('message', ''))[:160]}", code="gateway_refused")
        return data

    def _token_key(self) -> tuple:
        secret = self.secrets.get("client_secret", "")
        digest = hashlib.sha256(secret.encode()).hexdigest() if isinstance(secret, str) else ""
        return self.api_base, self.client_id, digest

    def _forget_token(self) -> None:
        with _lock:
            _tokens.pop(self._token_key(), None)

    def _token(self) -> str:
        """An OAuth2 client-credentials token, kept in the process until a minute before it expires."""
        key = self._token_key()
        with _lock:
            cached = _tokens.get(key)
        if cached and cached[1] > time.monotonic():
            return cached[0]
        secret = self.secrets.get("client_secret", "")
        if not self.client_id or not isinstance(secret, str) or not secret.strip():
            raise KamiError("paypal client_id or client_secret is empty: "
                            "`kami gateway set paypal client_id=… client_secret=…`", code="gateway_refused")
        response = http_send("POST", f"{self.api_base}/v1/oauth2/token", what="paypal: could not get an access token",
                             timeout=TIMEOUT_SECONDS, data={"grant_type": "client_credentials"},
                             auth=(self.client_id, secret), follow_redirects=False)
        if response.status_code in (400, 401, 403):
            raise KamiError("paypal: client_id/client_secret were refused; copy them again from the REST app "
                            "(`kami gateway set paypal client_id=… client_secret=…`)", code="gateway_refused")
        if response.status_code != 200:
            raise Retryable(f"paypal: could not get an access token: HTTP {response.status_code}; will retry")
        data = _json(response)
        token, lifetime = data.get("access_token"), data.get("expires_in")
        if not isinstance(token, str) or not token or not isinstance(lifetime, int):
            raise Retryable("paypal: the token answer had no access_token; will retry")
        with _lock:
            _tokens[key] = (token, time.monotonic() + max(lifetime - 60, 0))
        return token


class _NotFound(Exception):
    pass


def _json(response: httpx.Response) -> dict:
    try:
        data = response.json()
    except ValueError:
        data = None
    if not isinstance(data, dict):
        raise Retryable(f"paypal answered HTTP {response.status_code} without a JSON object; will retry")
    return data


def _capture_notice(capture: dict, *, paid: bool, raw: dict, strict: bool) -> Notice:
    """A capture (webhook resource or capture answer) as a Notice; `strict`: money must be readable."""
    order_no = capture.get("custom_id") or capture.get("invoice_id")
    trade_no = capture.get("id")
    if not isinstance(order_no, str) or not order_no or not isinstance(trade_no, str) or not trade_no:
        raise VerificationFailed("malformed event: the capture has no id or custom_id")
    amount_data = capture.get("amount") if isinstance(capture.get("amount"), dict) else {}
    try:
        currency = money.parse_currency(amount_data.get("currency_code"))
        amount = money.parse_amount(amount_data.get("value"), field="amount.value")
    except BadInput as exc:
        if strict:
            raise VerificationFailed(f"malformed event: {exc}") from None
        currency, amount = "", Decimal(0)
    return Notice(order_no=order_no, trade_no=trade_no, amount=amount, currency=currency, paid=paid, raw=raw)


def _ignored(event: dict, resource: dict) -> Notice:
    """An event Kami does not act on (refunds, disputes…): acknowledged and recorded only."""
    order_no = resource.get("custom_id") or resource.get("invoice_id")
    trade_no = resource.get("id") or event.get("id")
    return Notice(order_no=order_no[:64] if isinstance(order_no, str) and order_no else "-",
                  trade_no=trade_no[:128] if isinstance(trade_no, str) and trade_no else "-",
                  amount=Decimal(0), currency="", paid=False, raw=event)
