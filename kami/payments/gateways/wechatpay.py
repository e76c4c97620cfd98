"""WeChat Pay API v3 (微信支付), Native (QR code) payments, "WeChat Pay public key" mode.

Every request carries `Authorization: WECHATPAY2-SHA256-RSA2048 …`, an RSA-SHA256 signature by
the merchant private key over `METHOD\\nPATH?QUERY\\nts\\nnonce\\nbody\\n`. Every answer and every
notification is signed by WeChat over `ts\\nnonce\\nbody\\n` (the raw bytes, never re-serialised)
and carries `Wechatpay-Serial`: the configured `PUB_KEY_ID_…`. The notification's payload is
AES-256-GCM encrypted with the APIv3 key.

Field lessons: `WECHATPAY/SIGNTEST/` probes must fail; a timestamp more than 5 minutes off is a
replay; mchid and appid must be this shop's; an empty key refuses everything; an answer whose
signature does not verify is never believed.
"""
from __future__ import annotations

import base64
import binascii
import json
import secrets as pysecrets
from datetime import timedelta, timezone
from decimal import Decimal
from urllib.parse import quote, urlencode, urlsplit

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from django.utils.translation import gettext_lazy as _

from kami.core import clock, money
from kami.core.errors import BadInput, KamiError, Retryable, VerificationFailed
from kami.payments.interface import Gateway, Inbound, Notice, OrderInfo, PaymentAction, RefundResult, Reply, Urls
from kami.payments.toolkit import (config_stripped, currency_required, http_send, no_duplicates, retry_on_trouble, rsa_private_key,
                                   rsa_public_key, rsa_sha256_sign, rsa_sha256_verify, url_checked)

API_BASE = "https://api.mch.weixin.qq.com"
SCHEMA = "WECHATPAY2-SHA256-RSA2048"
SIGNTEST = "WECHATPAY/SIGNTEST/"
WINDOW_SECONDS = 300
TIMEOUT_SECONDS = 10
CHINA = timezone(timedelta(hours=8))
_CLOSE_DONE_CODES = ("ORDER_NOT_EXIST", "ORDERNOTEXIST", "ORDER_CLOSED", "ORDERCLOSED", "ORDERPAID", "ORDER_PAID")
_RETRYABLE_CODES = ("SYSTEM_ERROR", "SYSTEMERROR", "FREQUENCY_LIMITED", "BANK_ERROR")


def wechatpay_message(timestamp: str, nonce: str, body: bytes) -> bytes:
    """What WeChat signs on answers and notifications."""
    return timestamp.encode() + b"\n" + nonce.encode() + b"\n" + body + b"\n"


def request_message(method: str, path: str, timestamp: str, nonce: str, body: bytes) -> bytes:
    """What the merchant signs on a request; `path` includes the query string."""
    return f"{method}\n{path}\n{timestamp}\n{nonce}\n".encode() + body + b"\n"


rsa_sign, rsa_verify = rsa_sha256_sign, rsa_sha256_verify  # WECHATPAY2-SHA256-RSA2048 is SHA256withRSA


def _pem(text: object, what: str) -> bytes:
    if not isinstance(text, str) or "-----BEGIN" not in text:
        raise BadInput(f"{what} is empty or not PEM: paste the whole file, -----BEGIN … END----- lines included")
    return text.strip().replace("\\n", "\n").encode("ascii", "replace")


def load_private_key(text: object) -> rsa.RSAPrivateKey:
    return rsa_private_key(_pem(text, "merchant_private_key"), pem=True, name="merchant_private_key",
                           fix="paste apiclient_key.pem as downloaded")


def load_public_key(text: object) -> rsa.RSAPublicKey:
    return rsa_public_key(_pem(text, "wechatpay_public_key"), pem=True, name="wechatpay_public_key",
                          fix="paste pub_key.pem as downloaded")


class WeChatPayGateway(Gateway):
    name = "wechatpay"
    label = _("WeChat Pay")
    notify_methods = ("POST",)
    currencies = ("CNY",)
    required_config = ("mchid", "appid", "serial_no", "public_key_id")
    optional_config = ("api_base",)
    required_secrets = ("merchant_private_key", "wechatpay_public_key", "apiv3_key")
    supports_refund = True
    supports_close = True
    redact_fields = ()  # Wechatpay-Signature is public; the payload is encrypted; nothing secret arrives

    def __init__(self, *, config: dict, secrets: dict):
        super().__init__(config=config, secrets=secrets)
        self.mchid = str(config.get("mchid") or "")
        self.appid = str(config.get("appid") or "")
        self.serial_no = str(config.get("serial_no") or "")
        self.public_key_id = str(config.get("public_key_id") or "")
        self.api_base = str(config.get("api_base") or API_BASE).rstrip("/")

    @classmethod
    def config_clean(cls, config: dict) -> dict:
        config = config_stripped(config)
        if config.get("mchid") and not config["mchid"].isdigit():
            raise BadInput(f"wechatpay: mchid {config['mchid'][:40]!r} should be the 商户号 (digits)")
        if config.get("public_key_id") and not config["public_key_id"].startswith("PUB_KEY_ID_"):
            raise BadInput(f"wechatpay: public_key_id {config['public_key_id'][:60]!r} should be the PUB_KEY_ID_… "
                           "shown next to the WeChat Pay public key in the merchant platform")
        if config.get("serial_no"):
            config["serial_no"] = config["serial_no"].upper()
        if config.get("api_base"):
            url_checked(config["api_base"], gateway="wechatpay", setting="api_base", should=f"like {API_BASE}")
        return config

    # -- create -----------------------------------------------------------------------------

    def create_payment(self, order: OrderInfo, urls: Urls) -> PaymentAction:
        currency_required(order, "CNY", gateway="wechatpay")
        body = {"appid": self.appid, "mchid": self.mchid, "description": (order.subject or order.order_no)[:127],
                "out_trade_no": order.order_no, "notify_url": urls.notify,
                "amount": {"total": money.to_minor(order.amount, "CNY"), "currency": "CNY"}}
        if order.expires_at is not None:
            body["time_expire"] = order.expires_at.astimezone(CHINA).isoformat(timespec="seconds")
        what = f"native order {order.order_no}"
        status, answer = self._call("POST", "/v3/pay/transactions/native", body, what=what)
        _refused_unless_2xx(status, answer, what=what)
        code_url = answer.get("code_url")
        if not isinstance(code_url, str) or not code_url:
            raise KamiError(f"wechatpay {what}: the answer has no code_url", code="gateway_refused")
        return PaymentAction(type="qr", qr=code_url)

    # -- notify -----------------------------------------------------------------------------

    def parse_notification(self, inbound: Inbound) -> Notice:
        try:
            public_key = load_public_key(self.secrets.get("wechatpay_public_key", ""))
        except BadInput as exc:
            raise VerificationFailed(f"{exc}; every notification is refused until "
                                     "`kami gateway set wechatpay wechatpay_public_key=…` stores it") from None
        aes_key = self._apiv3_key()
        body = inbound.body
        self._check_signed(inbound.headers, body, public_key, what="notification")
        try:
            envelope = json.loads(body, object_pairs_hook=no_duplicates)
            resource = envelope["resource"]
            if resource.get("algorithm") != "AEAD_AES_256_GCM":
                raise ValueError(f"algorithm {str(resource.get('algorithm'))[:30]!r}")
            plain = AESGCM(aes_key).decrypt(resource["nonce"].encode(), base64.b64decode(resource["ciphertext"]),
                                            (resource.get("associated_data") or "").encode())
            data = json.loads(plain, object_pairs_hook=no_duplicates)
        except InvalidTag:
            raise VerificationFailed("the resource does not decrypt: check apiv3_key") from None
        except (ValueError, KeyError, TypeError, AttributeError, binascii.Error) as exc:
            raise VerificationFailed(f"malformed notification: {str(exc)[:80]}") from None
        if not isinstance(data, dict):
            raise VerificationFailed("malformed notification: the resource is not an object")
        notice = self._notice(data, what="notification", error=VerificationFailed)
        if not notice.trade_no and isinstance(envelope.get("id"), str):
            # unpaid: WeChat gives no transaction_id yet; the event id names what was received
            notice = Notice(order_no=notice.order_no, trade_no=envelope["id"], amount=notice.amount,
                            currency=notice.currency, paid=False, raw=notice.raw)
        return notice

    def check(self) -> list[str]:
        """The keys load, the APIv3 key has its 32 characters, the public key id looks right."""
        problems = []
        for name, load in (("merchant_private_key", load_private_key), ("wechatpay_public_key", load_public_key)):
            try:
                load(self.secrets.get(name, ""))
            except BadInput as exc:
                problems.append(str(exc))
        if len(str(self.secrets.get("apiv3_key", "")).encode()) != 32:
            problems.append("apiv3_key must be the 32-character APIv3 key set in the merchant platform")
        if not str(self.config.get("public_key_id", "")).startswith("PUB_KEY_ID_"):
            problems.append("public_key_id should start with PUB_KEY_ID_ (shown beside the WeChat Pay public key)")
        return problems

    def acknowledge(self, ok: bool) -> Reply:
        if ok:
            return Reply(status_code=204)
        return Reply(status_code=400, content_type="application/json", content=json.dumps(
            {"code": "FAIL", "message": "rejected or not processed; see the shop's notification log"}).encode())

    # -- query and refund -------------------------------------------------------------------

    def query(self, order: OrderInfo) -> Notice | None:
        what = f"query for {order.order_no}"
        path = f"/v3/pay/transactions/out-trade-no/{quote(order.order_no, safe='')}?{urlencode({'mchid': self.mchid})}"
        status, answer = self._call("GET", path, None, what=what)
        if status == 404 and answer.get("code") == "ORDER_NOT_EXIST":
            return None
        _refused_unless_2xx(status, answer, what=what)
        if answer.get("out_trade_no") != order.order_no:
            raise KamiError(f"wechatpay {what}: the answer is about another order", code="gateway_refused")
        return self._notice(answer, what=what, error=KamiError)

    def refund(self, *, order: OrderInfo, trade_no: str, amount: Decimal, refund_no: str, reason: str = "") -> RefundResult:
        what = f"refund {refund_no} of {order.order_no}"
        body = {"transaction_id": trade_no} if trade_no else {"out_trade_no": order.order_no}
        body.update({"out_refund_no": refund_no, "amount": {"refund": money.to_minor(amount, "CNY"),
                                                            "total": money.to_minor(order.amount, "CNY"), "currency": "CNY"}})
        if reason:
            body["reason"] = reason[:80]
        status, answer = self._call("POST", "/v3/refund/domestic/refunds", body, what=what)
        _refused_unless_2xx(status, answer, what=what)
        state = answer.get("status")
        if state not in ("SUCCESS", "PROCESSING"):
            raise KamiError(f"wechatpay {what}: refund status {str(state)[:20]!r}; refund by hand in the merchant "
                            "platform", code="gateway_refused")
        return RefundResult(refund_no=refund_no, gateway_ref=str(answer.get("refund_id") or ""),
                            done=state == "SUCCESS", pending=state == "PROCESSING", raw=answer)

    def close(self, *, order: OrderInfo) -> None:
        """Close the order's unpaid transaction so its code can no longer be paid (204 = closed).
        An order WeChat does not know (the code was never scanned), one already closed, or one
        paid meanwhile (the notification path flags that) is done."""
        what = f"close of {order.order_no}"
        path = f"/v3/pay/transactions/out-trade-no/{quote(order.order_no, safe='')}/close"
        status, answer = self._call("POST", path, {"mchid": self.mchid}, what=what)
        if status not in range(200, 300) and answer.get("code") in _CLOSE_DONE_CODES:
            return
        _refused_unless_2xx(status, answer, what=what)

    # -- shared -----------------------------------------------------------------------------

    def _notice(self, data: dict, *, what: str, error: type[KamiError]) -> Notice:
        if data.get("mchid") != self.mchid:
            raise error(f"wechatpay {what}: mchid {str(data.get('mchid'))[:32]!r} is not this shop's {self.mchid!r}")
        if data.get("appid") != self.appid:
            raise error(f"wechatpay {what}: appid {str(data.get('appid'))[:32]!r} is not this shop's {self.appid!r}")
        order_no, trade_no, amount = data.get("out_trade_no"), data.get("transaction_id", ""), data.get("amount")
        paid = data.get("trade_state") == "SUCCESS"
        if not isinstance(order_no, str) or not isinstance(trade_no, str) or (paid and not trade_no):
            raise error(f"wechatpay {what}: out_trade_no and transaction_id are required")
        total = amount.get("total") if isinstance(amount, dict) else None
        if not isinstance(total, int) or isinstance(total, bool):
            raise error(f"wechatpay {what}: amount.total must be a whole number of fen")
        try:
            currency = money.parse_currency(amount.get("currency") or "CNY")
        except BadInput as exc:
            raise error(f"wechatpay {what}: {exc}") from None
        return Notice(order_no=order_no, trade_no=trade_no, amount=money.from_minor(total, currency),
                      currency=currency, paid=paid, raw=data)

    def _check_signed(self, headers, body: bytes, public_key: rsa.RSAPublicKey, *, what: str) -> None:
        """Wechatpay-* headers: the configured key id, no probe, fresh, and a good signature."""
        ts, nonce = headers.get("Wechatpay-Timestamp", ""), headers.get("Wechatpay-Nonce", "")
        signature, serial = headers.get("Wechatpay-Signature", ""), headers.get("Wechatpay-Serial", "")
        if not self.public_key_id or serial != self.public_key_id:
            raise VerificationFailed(f"{what}: Wechatpay-Serial {serial[:64]!r} is not the configured public_key_id "
                                     f"{self.public_key_id!r}")
        if signature.startswith(SIGNTEST):
            raise VerificationFailed(f"{what}: a WECHATPAY/SIGNTEST/ signature probe, refused as it must be")
        if not ts.isascii() or not ts.isdigit() or abs(clock.now().timestamp() - int(ts)) > WINDOW_SECONDS:
            raise VerificationFailed(f"{what}: Wechatpay-Timestamp {ts[:20]!r} is outside the 5-minute window "
                                     "(replayed, or the server clock is off)")
        if not nonce or not rsa_verify(public_key, wechatpay_message(ts, nonce, body), signature):
            raise VerificationFailed(f"{what}: bad signature")

    def _apiv3_key(self) -> bytes:
        key = self.secrets.get("apiv3_key", "")
        if not isinstance(key, str) or not key.isascii() or len(key) != 32:
            raise VerificationFailed("apiv3_key is empty or not 32 ASCII characters: every notification is refused "
                                     "until `kami gateway set wechatpay apiv3_key=…` stores the APIv3 key")
        return key.encode()

    def _call(self, method: str, path: str, body: dict | None, *, what: str) -> tuple[int, dict]:
        """A signed request; the answer's status and JSON, its signature verified when 2xx."""
        try:
            private_key = load_private_key(self.secrets.get("merchant_private_key", ""))
            public_key = load_public_key(self.secrets.get("wechatpay_public_key", ""))
        except BadInput as exc:
            raise KamiError(f"wechatpay {what}: {exc}", code="gateway_misconfigured") from None
        content = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode() if body is not None else b""
        ts, nonce = str(int(clock.now().timestamp())), pysecrets.token_hex(16)
        signature = rsa_sign(private_key, request_message(method, path, ts, nonce, content))
        authorization = (f'{SCHEMA} mchid="{self.mchid}",nonce_str="{nonce}",signature="{signature}",'
                         f'timestamp="{ts}",serial_no="{self.serial_no}"')
        headers = {"Authorization": authorization, "Accept": "application/json", "Wechatpay-Serial": self.public_key_id,
                   "User-Agent": "kami"}
        if body is not None:
            headers["Content-Type"] = "application/json"
        response = http_send(method, self.api_base + path, what=f"wechatpay {what}", timeout=TIMEOUT_SECONDS,
                             content=content or None, headers=headers)
        retry_on_trouble(response, what=f"wechatpay {what}", who=urlsplit(self.api_base).netloc, also=(429,))
        if 200 <= response.status_code < 300:
            try:
                self._check_signed(response.headers, response.content, public_key, what=f"wechatpay {what}: the answer")
            except VerificationFailed as exc:
                raise KamiError(f"{exc}; check wechatpay_public_key and public_key_id", code="gateway_refused") from None
        try:
            answer = json.loads(response.content) if response.content else {}
        except ValueError:
            raise Retryable(f"wechatpay {what}: the answer is not JSON (HTTP {response.status_code}); will retry") from None
        return response.status_code, answer if isinstance(answer, dict) else {}


def _refused_unless_2xx(status: int, answer: dict, *, what: str) -> None:
    if 200 <= status < 300:
        return
    code, message = str(answer.get("code", ""))[:40], str(answer.get("message", ""))[:200]
    if code in _RETRYABLE_CODES:
        raise Retryable(f"wechatpay {what}: {code}; will retry")
    raise KamiError(f"wechatpay {what} refused (HTTP {status}, {code} {message!r}): check mchid, appid, serial_no "
                    "and the keys (kami gateway list)", code="gateway_refused")
