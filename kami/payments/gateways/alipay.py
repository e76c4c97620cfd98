"""Alipay open platform (支付宝开放平台), RSA2 public-key mode.

Two ways to pay: `mode=qr` (default) asks `alipay.trade.precreate` for a code the buyer scans
(当面付); `mode=page` redirects the browser to `alipay.trade.page.pay` (电脑网站支付). Alipay
POSTs `/pay/alipay/notify`; `alipay.trade.query` and `alipay.trade.refund` are server calls.

Requests are signed with the app private key over every parameter but `sign`, sorted, joined
`k=v&…` (`sign_type` included). Notifications are verified with the *Alipay* public key over
every parameter but `sign`, `sign_type` and empty values. Sync answers are verified over the
exact raw `…_response` text as it arrived (re-serialising it would change the bytes).

Field lessons: an empty or unloadable key refuses every notification; a field sent twice is
refused rather than picked from; app_id (and seller_id when set) must be this shop's; an
unsigned or badly signed answer is never believed when it says "paid".
"""
from __future__ import annotations

import base64
import binascii
import json
from datetime import timedelta, timezone
from decimal import Decimal
from urllib.parse import urlencode, urlsplit

from cryptography.hazmat.primitives.asymmetric import rsa
from django.utils.translation import gettext_lazy as _

from kami.core import clock, money
from kami.core.errors import BadInput, KamiError, Retryable, VerificationFailed
from kami.payments.interface import Gateway, Inbound, Notice, OrderInfo, PaymentAction, RefundResult, Reply, Urls
from kami.payments.toolkit import (config_stripped, currency_required, flat_notice, http_send, retry_on_trouble, rsa_private_key,
                                   rsa_public_key, rsa_sha256_sign, rsa_sha256_verify, single_values, text_reply,
                                   url_checked)

GATEWAY_URL = "https://openapi.alipay.com/gateway.do"
PAID = ("TRADE_SUCCESS", "TRADE_FINISHED")
TIMEOUT_SECONDS = 10
CHINA = timezone(timedelta(hours=8))  # Alipay's timestamps are Beijing time
_MODES = ("qr", "page")
_RETRYABLE_SUB_CODES = ("ACQ.SYSTEM_ERROR", "aop.ACQ.SYSTEM_ERROR", "isp.unknow-error")


def alipay_notify_content(params: dict) -> str:
    """What a notification's signature covers: all but sign/sign_type/empty, sorted, k=v&…"""
    return "&".join(f"{k}={params[k]}" for k in sorted(params) if k not in ("sign", "sign_type") and params[k] != "")


def alipay_request_content(params: dict) -> str:
    """What a request's signature covers: all but sign (sign_type included), sorted, k=v&…"""
    return "&".join(f"{k}={params[k]}" for k in sorted(params) if k != "sign" and params[k] not in ("", None))


rsa2_sign, rsa2_verify = rsa_sha256_sign, rsa_sha256_verify  # RSA2 is SHA256withRSA


def load_private_key(text: str) -> rsa.RSAPrivateKey:
    """An RSA private key as PEM (PKCS#1 or PKCS#8) or the bare base64 body Alipay's tool shows."""
    data, pem = _key_bytes(text)
    return rsa_private_key(data, pem=pem, name="the private key", fix="paste the PEM (or its base64 body) as generated")


def load_public_key(text: str) -> rsa.RSAPublicKey:
    """An RSA public key as PEM or the bare base64 body Alipay's console shows."""
    data, pem = _key_bytes(text)
    return rsa_public_key(data, pem=pem, name="the public key", fix="paste the PEM (or its base64 body) as shown")


def _key_bytes(text: object) -> tuple[bytes, bool]:
    if not isinstance(text, str) or not text.strip():
        raise BadInput("the key is empty")
    text = text.strip().replace("\\n", "\n")  # a PEM typed on one command line
    if "-----BEGIN" in text:
        return text.encode("ascii", "replace"), True
    try:
        return base64.b64decode("".join(text.split()), validate=True), False
    except (binascii.Error, ValueError):
        raise BadInput("the key is neither PEM nor base64") from None


def response_content(raw: bytes, method: str) -> bytes | None:
    """The exact bytes of the `<method>_response` object in a sync answer, found by brace
    matching (strings and escapes respected), or None when the answer has no such object."""
    for name in (f'"{method.replace(".", "_")}_response"'.encode(), b'"error_response"'):
        at = raw.find(name)
        if at < 0:
            continue
        start = raw.find(b"{", at + len(name))
        if start < 0 or raw[at + len(name):start].strip() != b":":
            continue
        depth, in_string, escaped = 0, False, False
        for i in range(start, len(raw)):
            c = raw[i:i + 1]
            if in_string:
                escaped, in_string = (False, True) if escaped else (c == b"\\", c != b'"')
            elif c == b'"':
                in_string = True
            elif c == b"{":
                depth += 1
            elif c == b"}":
                depth -= 1
                if depth == 0:
                    return raw[start:i + 1]
    return None


class AlipayGateway(Gateway):
    name = "alipay"
    label = _("Alipay")
    verifies_offline = True
    notify_methods = ("POST",)
    currencies = ("CNY",)
    required_config = ("app_id",)
    optional_config = ("seller_id", "gateway_url", "mode")
    required_secrets = ("app_private_key", "alipay_public_key")
    supports_refund = True
    supports_close = True
    redact_fields = ()  # a notification carries no secret: its sign is public and kept for re-checking

    def __init__(self, *, config: dict, secrets: dict):
        super().__init__(config=config, secrets=secrets)
        self.app_id = str(config.get("app_id") or "")
        self.seller_id = str(config.get("seller_id") or "")
        self.gateway_url = str(config.get("gateway_url") or GATEWAY_URL)
        self.mode = str(config.get("mode") or "qr")

    @classmethod
    def config_clean(cls, config: dict) -> dict:
        """Normalise and check settings as they are saved (`kami gateway set alipay …`)."""
        config = config_stripped(config)
        if config.get("app_id") and not config["app_id"].isdigit():
            raise BadInput(f"alipay: app_id {config['app_id'][:40]!r} should be the APPID the open platform shows (digits)")
        if config.get("seller_id") and not config["seller_id"].isdigit():
            raise BadInput(f"alipay: seller_id {config['seller_id'][:40]!r} should be the 2088… partner id, or empty")
        if config.get("mode") and config["mode"] not in _MODES:
            raise BadInput(f"alipay: mode {config['mode'][:20]!r} should be qr (scan a code) or page (redirect)")
        if config.get("gateway_url"):
            url_checked(config["gateway_url"], gateway="alipay", setting="gateway_url", should=f"like {GATEWAY_URL}")
        return config

    # -- create -----------------------------------------------------------------------------

    def create_payment(self, order: OrderInfo, urls: Urls) -> PaymentAction:
        currency_required(order, "CNY", gateway="alipay")
        biz = {"out_trade_no": order.order_no, "subject": order.subject or order.order_no,
               "total_amount": format(money.quantize(order.amount, "CNY"), "f")}
        if order.expires_at is not None:
            biz["time_expire"] = order.expires_at.astimezone(CHINA).strftime("%Y-%m-%d %H:%M:%S")
        if self.mode == "page":
            biz["product_code"] = "FAST_INSTANT_TRADE_PAY"
            params = self._signed("alipay.trade.page.pay", biz, notify_url=urls.notify, return_url=urls.ret)
            return PaymentAction(type="redirect", url=f"{self.gateway_url}?{urlencode(params)}")
        answer = self._call("alipay.trade.precreate", biz, what=f"precreate for {order.order_no}", notify_url=urls.notify)
        self._refused_unless_ok(answer, what=f"precreate for {order.order_no}")
        qr = answer.get("qr_code")
        if not isinstance(qr, str) or not qr:
            raise KamiError(f"alipay precreate for {order.order_no}: the answer has no qr_code", code="gateway_refused")
        return PaymentAction(type="qr", qr=qr)

    # -- notify -----------------------------------------------------------------------------

    def parse_notification(self, inbound: Inbound) -> Notice:
        params = single_values(inbound)
        try:
            public_key = load_public_key(self.secrets.get("alipay_public_key", ""))
        except BadInput as exc:
            raise VerificationFailed(f"alipay_public_key: {exc}; every notification is refused until "
                                     "`kami gateway set alipay alipay_public_key=…` stores Alipay's public key") from None
        if params.get("sign_type", "RSA2") != "RSA2":
            raise VerificationFailed(f"unsupported sign_type {params['sign_type'][:20]!r}: only RSA2 is accepted")
        content = alipay_notify_content(params).encode("utf-8", "surrogatepass")
        if not params.get("sign") or not rsa2_verify(public_key, content, params["sign"]):
            raise VerificationFailed("bad signature")
        if params.get("app_id") != self.app_id:
            raise VerificationFailed(f"app_id {params.get('app_id', '')[:32]!r} is not this shop's app_id {self.app_id!r}")
        if self.seller_id and params.get("seller_id") != self.seller_id:
            raise VerificationFailed(f"seller_id {params.get('seller_id', '')[:32]!r} is not this shop's {self.seller_id!r}")
        return flat_notice(params, order_field="out_trade_no", trade_field="trade_no", amount_field="total_amount",
                           currency="CNY", paid=params.get("trade_status") in PAID)

    def check(self) -> list[str]:
        """Both keys load, and the "Alipay public key" is not the app's own (the common mix-up)."""
        problems = []
        try:
            own = load_private_key(self.secrets.get("app_private_key", "")).public_key().public_numbers()
        except BadInput as exc:
            problems.append(f"app_private_key: {exc}")
            own = None
        try:
            theirs = load_public_key(self.secrets.get("alipay_public_key", "")).public_numbers()
            if own is not None and theirs == own:
                problems.append("alipay_public_key is the app's own public key: paste Alipay's public key "
                                "(支付宝公钥) from the console instead")
        except BadInput as exc:
            problems.append(f"alipay_public_key: {exc}")
        return problems

    def acknowledge(self, ok: bool) -> Reply:
        return text_reply(ok, success="success")

    # -- query and refund -------------------------------------------------------------------

    def query(self, order: OrderInfo) -> Notice | None:
        what = f"query for {order.order_no}"
        answer = self._call("alipay.trade.query", {"out_trade_no": order.order_no}, what=what)
        if answer.get("sub_code") == "ACQ.TRADE_NOT_EXIST":
            return None  # the QR code was never scanned: Alipay has no trade yet
        self._refused_unless_ok(answer, what=what)
        if answer.get("out_trade_no") != order.order_no:
            raise KamiError(f"alipay {what}: the answer is about another order", code="gateway_refused")
        trade_no = answer.get("trade_no")
        if not isinstance(trade_no, str) or not trade_no:
            raise KamiError(f"alipay {what}: the answer has no trade_no", code="gateway_refused")
        try:
            amount = money.parse_amount(answer.get("total_amount"), field="total_amount")
        except BadInput as exc:
            raise KamiError(f"alipay {what}: {exc}", code="gateway_refused") from None
        return Notice(order_no=order.order_no, trade_no=trade_no, amount=amount, currency="CNY",
                      paid=answer.get("trade_status") in PAID, raw=answer)

    def refund(self, *, order: OrderInfo, trade_no: str, amount: Decimal, refund_no: str, reason: str = "") -> RefundResult:
        what = f"refund {refund_no} of {order.order_no}"
        biz = {"out_trade_no": order.order_no, "refund_amount": format(money.quantize(amount, "CNY"), "f"),
               "out_request_no": refund_no}
        if trade_no:
            biz["trade_no"] = trade_no
        if reason:
            biz["refund_reason"] = reason[:256]
        answer = self._call("alipay.trade.refund", biz, what=what)
        self._refused_unless_ok(answer, what=what)
        # fund_change N: this out_request_no was refunded before (a repeat) or the money has not
        # moved yet; either way the refund query / reconciliation settles it, never a second refund.
        moved = answer.get("fund_change") == "Y"
        return RefundResult(refund_no=refund_no, gateway_ref=str(answer.get("trade_no") or trade_no),
                            done=moved, pending=not moved, raw=answer)

    def close(self, *, order: OrderInfo) -> None:
        """`alipay.trade.close`: the buyer can no longer pay this order's QR code or page. A trade
        Alipay does not know (never scanned) or can no longer close (already closed; or paid, which
        the notification path flags) is done."""
        what = f"close of {order.order_no}"
        answer = self._call("alipay.trade.close", {"out_trade_no": order.order_no}, what=what)
        if answer.get("sub_code") in ("ACQ.TRADE_NOT_EXIST", "ACQ.TRADE_STATUS_ERROR"):
            return
        self._refused_unless_ok(answer, what=what)

    # -- the wire ---------------------------------------------------------------------------

    def _signed(self, method: str, biz: dict, **extra: str) -> dict:
        try:
            key = load_private_key(self.secrets.get("app_private_key", ""))
        except BadInput as exc:
            raise KamiError(f"alipay app_private_key: {exc} (kami gateway set alipay app_private_key=…)",
                            code="gateway_misconfigured") from None
        params = {"app_id": self.app_id, "method": method, "charset": "utf-8", "sign_type": "RSA2", "version": "1.0",
                  "timestamp": clock.now().astimezone(CHINA).strftime("%Y-%m-%d %H:%M:%S"),
                  "biz_content": json.dumps(biz, ensure_ascii=False, separators=(",", ":")), **extra}
        params["sign"] = rsa2_sign(key, alipay_request_content(params).encode("utf-8"))
        return params

    def _call(self, method: str, biz: dict, *, what: str, **extra: str) -> dict:
        """POST a signed request; give back the verified `…_response` object."""
        params = self._signed(method, biz, **extra)
        host = urlsplit(self.gateway_url).netloc
        response = http_send("POST", self.gateway_url, what=f"alipay {what}", timeout=TIMEOUT_SECONDS, data=params,
                             headers={"Content-Type": "application/x-www-form-urlencoded;charset=utf-8"})
        retry_on_trouble(response, what=f"alipay {what}", who=host)
        if response.status_code != 200:
            raise KamiError(f"alipay {what}: {host} answered HTTP {response.status_code}; check gateway_url "
                            "(kami gateway list)", code="gateway_refused")
        return self._verified(response.content, method, what=what)

    def _verified(self, raw: bytes, method: str, *, what: str) -> dict:
        content = response_content(raw, method)
        try:
            document = json.loads(raw)
            answer = json.loads(content) if content is not None else None
        except ValueError:
            raise Retryable(f"alipay {what}: the answer is not JSON; will retry") from None
        if not isinstance(answer, dict) or not isinstance(document, dict):
            raise Retryable(f"alipay {what}: the answer has no {method.replace('.', '_')}_response; will retry")
        sign = document.get("sign")
        if not sign and answer.get("code") != "10000":
            return answer  # Alipay leaves some refusals (a wrong app_id) unsigned: a refusal is all it can be
        try:
            public_key = load_public_key(self.secrets.get("alipay_public_key", ""))
        except BadInput as exc:
            raise KamiError(f"alipay alipay_public_key: {exc}", code="gateway_misconfigured") from None
        if not isinstance(sign, str) or not rsa2_verify(public_key, content, sign):
            raise KamiError(f"alipay {what}: the answer's signature does not verify; check alipay_public_key is "
                            "Alipay's public key (not the app's own)", code="gateway_refused")
        return answer

    def _refused_unless_ok(self, answer: dict, *, what: str) -> None:
        if answer.get("code") == "10000":
            return
        code, sub = str(answer.get("code", ""))[:10], str(answer.get("sub_code", ""))[:60]
        message = f"{answer.get('msg', '')} {answer.get('sub_msg', '')}".strip()[:200]
        if code == "20000" or sub in _RETRYABLE_SUB_CODES:
            raise Retryable(f"alipay {what}: service trouble ({code} {sub}); will retry")
        raise KamiError(f"alipay {what} refused: {code} {sub} {message!r}; check app_id, the keys and the "
                        "product's signing status on open.alipay.com", code="gateway_refused")

