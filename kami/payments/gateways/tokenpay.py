"""TokenPay (LightCountry/TokenPay, self-hosted, .NET; MD5 signatures, PascalCase JSON).

The shop POSTs a signed order to `{url}/CreateOrder` and sends the buyer to the pay page it
answers (`data`), keeping TokenPay's `info.Id`; TokenPay POSTs signed JSON to
`/pay/tokenpay/notify` (only paid orders, Status 1); `{url}/Query?Id=…` answers
reconciliation. The recipe (`tokenpay_sign`): every field except `Signature`, null and empty
values skipped, ascending by name, `k=v` joined with `&`, the ApiToken appended, MD5 lowercase.

The server signs `ActualAmount` with C# `decimal.ToString()`, which keeps the scale it was sent
with, so the amount goes out as `29.90` and is signed as `29.90`. TokenPay's field set grows
between versions, so a notification is verified over whatever fields arrive, each number with
the exact text it was sent as.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import re
from urllib.parse import urlsplit

import httpx
from django.http import HttpRequest, HttpResponse

from kami.core import money
from kami.core.errors import BadInput, KamiError, Retryable, VerificationFailed
from kami.payments.gateways.epusdt import signed_fields
from kami.payments.interface import Gateway, Notice, OrderInfo, PaymentAction, Urls

PAID = "1"  # 0 pending, 1 paid, 2 expired
TIMEOUT_SECONDS = 10
_COIN_RE = re.compile(r"^[A-Za-z0-9_]{2,64}$")
_NO_SUCH_ORDER = "订单不存在"


def tokenpay_sign(fields: dict[str, str], token: str) -> str:
    """The TokenPay MD5 signature of `fields` (values as the exact text that is sent)."""
    text = "&".join(f"{k}={fields[k]}" for k in sorted(fields) if k != "Signature" and fields[k] not in ("", None))
    return hashlib.md5((text + token).encode("utf-8", "surrogatepass")).hexdigest()


class TokenPayGateway(Gateway):
    name = "tokenpay"
    label = "USDT / TRX (TokenPay)"
    required_config = ("url",)
    optional_config = ("currency", "fiat")
    required_secrets = ("api_token",)
    redact_fields = ("api_token",)

    def __init__(self, *, config: dict, secrets: dict):
        super().__init__(config=config, secrets=secrets)
        self.base_url = str(config.get("url") or "").strip().rstrip("/")  # checked by config_clean
        self.coin = str(config.get("currency") or "USDT_TRC20")
        self.fiat = str(config.get("fiat") or "CNY").upper()
        self.currencies = (self.fiat,)

    @classmethod
    def config_clean(cls, config: dict) -> dict:
        """Normalise and check settings as they are saved (`kami gateway set tokenpay …`)."""
        config = {k: (str(v).strip() if k in ("url", "currency", "fiat") else v) for k, v in config.items()}
        if config.get("url"):
            parts = urlsplit(config["url"])
            if parts.scheme not in ("http", "https") or not parts.netloc or parts.query or parts.fragment:
                raise BadInput(f"tokenpay: url {config['url']!r} should be your TokenPay site's address, "
                               "like https://tokenpay.example.com")
            config["url"] = config["url"].rstrip("/")
        if config.get("currency") and not _COIN_RE.match(config["currency"]):
            raise BadInput(f"tokenpay: currency {config['currency']!r} should be the coin the buyer pays in, "
                           "as TokenPay names it: USDT_TRC20, TRX, EVM_BSC_USDT_BEP20…")
        if config.get("fiat"):
            config["fiat"] = money.parse_currency(config["fiat"])
        return config

    # -- create -----------------------------------------------------------------------------

    def create_payment(self, order: OrderInfo, urls: Urls) -> PaymentAction:
        if order.currency.upper() != self.fiat:
            raise BadInput(f"tokenpay charges in {self.fiat} (its BaseCurrency), the order is in {order.currency}")
        token = self._token()
        if not token:
            raise KamiError("tokenpay api_token is empty: `kami gateway set tokenpay api_token=…`",
                            code="gateway_misconfigured")
        amount = format(money.quantize(order.amount, self.fiat), "f")
        fields = {"OutOrderId": order.order_no, "OrderUserKey": order.email or order.order_no, "Currency": self.coin,
                  "NotifyUrl": urls.notify, "RedirectUrl": urls.ret}
        fields["Signature"] = tokenpay_sign({**fields, "ActualAmount": amount}, token)
        # ActualAmount goes out as a JSON number with exactly the text that was signed.
        body = json.dumps(fields, ensure_ascii=False)[:-1] + f', "ActualAmount": {amount}}}'
        answer = self._call("POST", "/CreateOrder", order.order_no, content=body.encode(),
                            headers={"Content-Type": "application/json"})
        info = answer.get("info")
        pay_url, trade_id = answer.get("data"), info.get("Id") if isinstance(info, dict) else None
        if answer.get("success") is not True:
            raise KamiError(f"tokenpay create for {order.order_no} refused: {_message(answer)}; if it is about the "
                            "signature, api_token must equal TokenPay's ApiToken", code="gateway_refused")
        if not isinstance(pay_url, str) or not pay_url.startswith(("https://", "http://")) \
                or not isinstance(trade_id, str) or not trade_id:
            raise KamiError(f"tokenpay create for {order.order_no}: the answer has no pay page or Id",
                            code="gateway_refused")
        return PaymentAction(type="redirect", url=pay_url, gateway_ref=trade_id)

    # -- notify -----------------------------------------------------------------------------

    def parse_notification(self, request: HttpRequest) -> Notice:
        token = self._token()
        if not token:
            raise VerificationFailed("tokenpay api_token is empty: every notification is refused until "
                                     "`kami gateway set tokenpay api_token=…` stores it")
        fields = signed_fields(request.body, sender="TokenPay")
        given = fields.get("Signature") or ""
        if not hmac.compare_digest(tokenpay_sign(fields, token).encode(), given.lower().encode("utf-8", "replace")):
            raise VerificationFailed("bad signature")
        return self._notice(fields, what="notification")

    def acknowledge(self, ok: bool) -> HttpResponse:
        return HttpResponse("ok" if ok else "fail", status=200 if ok else 400, content_type="text/plain")

    # -- query ------------------------------------------------------------------------------

    def query(self, order: OrderInfo) -> Notice | None:
        """Ask `/Query` about TokenPay's order `Id` (kept at creation as gateway_ref)."""
        if not order.gateway_ref:
            return None  # created before Kami kept TokenPay's Id: nothing to ask about
        signature = hashlib.md5(f"Id={order.gateway_ref}{self._token()}".encode()).hexdigest()
        answer = self._call("GET", "/Query", order.order_no, params={"Id": order.gateway_ref, "Signature": signature})
        if answer.get("success") is not True:
            if _NO_SUCH_ORDER in _message(answer):
                return None
            raise KamiError(f"tokenpay query for {order.order_no} refused: {_message(answer)}; check api_token",
                            code="gateway_refused")
        data = answer.get("data")
        if not isinstance(data, dict):
            raise KamiError(f"tokenpay query for {order.order_no}: the answer has no order data", code="gateway_refused")
        # The query answers with ASP.NET's camelCase names (id, outOrderId…): read names case-blind.
        fields = {key[:1].upper() + key[1:]: value for key, value in data.items()}
        if str(fields.get("Id", "")).lower() != order.gateway_ref.lower() or fields.get("OutOrderId") != order.order_no:
            raise KamiError(f"tokenpay query for {order.order_no}: the answer is about another order",
                            code="gateway_refused")
        if fields.get("Status") in ("Paid", "paid"):
            fields["Status"] = PAID
        try:
            return self._notice(fields, what="query answer")
        except VerificationFailed as exc:
            raise KamiError(f"tokenpay query for {order.order_no}: {exc}", code="gateway_refused") from None

    # -- helpers ----------------------------------------------------------------------------

    def _notice(self, fields: dict, *, what: str) -> Notice:
        order_no, trade_no = fields.get("OutOrderId") or "", fields.get("Id") or ""
        if not isinstance(order_no, str) or not isinstance(trade_no, str) or not order_no or not trade_no:
            raise VerificationFailed(f"malformed {what}: OutOrderId and Id are required")
        try:
            amount = money.parse_amount(fields.get("ActualAmount"), field="ActualAmount")
        except BadInput as exc:
            raise VerificationFailed(f"malformed {what}: {exc}") from None
        status = fields.get("Status")
        return Notice(order_no=order_no, trade_no=trade_no, amount=amount, currency=self.fiat,
                      paid=isinstance(status, str) and status == PAID, raw=fields)

    def _call(self, method: str, path: str, order_no: str, **kwargs) -> dict:
        """One request to TokenPay; its JSON answer, numbers kept as their text."""
        what = f"tokenpay {'create' if method == 'POST' else 'query'} for {order_no}"
        try:
            response = httpx.request(method, self.base_url + path, timeout=TIMEOUT_SECONDS, **kwargs)
        except httpx.HTTPError as exc:
            host = urlsplit(self.base_url).netloc
            raise Retryable(f"{what}: {type(exc).__name__} talking to {host}; will retry") from None
        if response.status_code >= 500:
            raise Retryable(f"{what}: TokenPay answered HTTP {response.status_code}; will retry")
        try:
            answer = json.loads(response.content, parse_float=str, parse_int=str)
        except (ValueError, RecursionError):
            answer = None
        if not isinstance(answer, dict):
            raise KamiError(f"{what}: TokenPay answered HTTP {response.status_code} without JSON at {path}; "
                            "check url (kami gateway list)", code="gateway_refused")
        return answer

    def _token(self) -> str:
        token = self.secrets.get("api_token", "")
        return token if isinstance(token, str) and token.strip() else ""


def _message(answer: dict) -> str:
    return str(answer.get("message", ""))[:100]
