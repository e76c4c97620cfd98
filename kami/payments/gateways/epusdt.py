"""Epusdt and BEpusdt (self-hosted USDT gateways; one protocol, MD5 signatures).

The shop POSTs a signed JSON order to `{url}{create_path}` and sends the buyer to the
`payment_url` it answers; the instance POSTs signed JSON to `/pay/epusdt/notify` (status 2 =
paid); `{url}/pay/check-status/{trade_id}` answers reconciliation. The recipe (`epusdt_sign`):
the fields except `signature`, null and empty values skipped, as `k=v` tokens sorted as strings,
joined with `&`, the api_auth_token appended, MD5 as lowercase hex.

The server signs numbers as Go's `FormatFloat(f, 'f', -1, 64)` (shortest form: `29.9`, `42`),
so the amount is sent in that form and signed as sent; a notification is parsed keeping each
number's exact text. Field lessons answered: an empty token never verifies anything; a field
sent twice, or as a list or object, is refused; signatures are compared in constant time.
"""
from __future__ import annotations

import hashlib
import hmac
import json
from decimal import Decimal
from urllib.parse import quote, urlsplit

import httpx
from django.http import HttpRequest, HttpResponse

from kami.core import money
from kami.core.errors import BadInput, KamiError, Retryable, VerificationFailed
from kami.payments.interface import Gateway, Notice, OrderInfo, PaymentAction, Urls

PAID = "2"  # 1 waiting, 2 paid, 3 expired
CREATE_PATH = "/api/v1/order/create-transaction"
TIMEOUT_SECONDS = 10
_REFUSALS = {  # Epusdt's error codes, with what the merchant should do
    "401": "the signature was refused: api_auth_token must equal the instance's api_auth_token",
    "10002": "Epusdt already has an order with this number",
    "10003": "Epusdt has no wallet address to receive with: add one in the Epusdt admin",
    "10004": "Epusdt refused the amount (below its minimum?)",
    "10006": "Epusdt could not convert the amount (is its exchange rate set?)",
}


def epusdt_sign(fields: dict[str, str], token: str) -> str:
    """The Epusdt MD5 signature of `fields` (values as the exact text that is sent)."""
    tokens = sorted(f"{k}={v}" for k, v in fields.items() if k != "signature" and v not in ("", None))
    return hashlib.md5(("&".join(tokens) + token).encode("utf-8", "surrogatepass")).hexdigest()


def go_number(amount: Decimal) -> str:
    """`amount` as Go prints a float64 with FormatFloat(f, 'f', -1, 64): 29.90 -> 29.9, 42.00 -> 42."""
    text = format(amount, "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


class EpusdtGateway(Gateway):
    name = "epusdt"
    label = "USDT (Epusdt / BEpusdt)"
    required_config = ("url",)
    optional_config = ("create_path", "currency")
    required_secrets = ("api_auth_token",)
    redact_fields = ("api_auth_token",)

    def __init__(self, *, config: dict, secrets: dict):
        super().__init__(config=config, secrets=secrets)
        self.base_url = str(config.get("url") or "").strip().rstrip("/")  # checked by config_clean
        self.create_path = str(config.get("create_path") or CREATE_PATH)
        self.currency = str(config.get("currency") or "CNY").upper()
        self.currencies = (self.currency,)

    @classmethod
    def config_clean(cls, config: dict) -> dict:
        """Normalise and check settings as they are saved (`kami gateway set epusdt …`)."""
        config = {k: (str(v).strip() if k in ("url", "create_path", "currency") else v) for k, v in config.items()}
        if config.get("url"):
            parts = urlsplit(config["url"])
            if parts.scheme not in ("http", "https") or not parts.netloc or parts.query or parts.fragment:
                raise BadInput(f"epusdt: url {config['url']!r} should be your Epusdt instance's address, "
                               "like https://usdt.example.com")
            config["url"] = config["url"].rstrip("/")
        if config.get("create_path"):
            path = config["create_path"]
            if not path.startswith("/") or "?" in path or "#" in path or " " in path:
                raise BadInput(f"epusdt: create_path {path!r} should be a path like {CREATE_PATH} "
                               "(GMwallet: /payments/epusdt/v1/order/create-transaction)")
        if config.get("currency"):
            config["currency"] = money.parse_currency(config["currency"])
        return config

    # -- create -----------------------------------------------------------------------------

    def create_payment(self, order: OrderInfo, urls: Urls) -> PaymentAction:
        if order.currency.upper() != self.currency:
            raise BadInput(f"epusdt charges in {self.currency}, the order is in {order.currency}")
        token = self._token()
        if not token:
            raise KamiError("epusdt api_auth_token is empty: `kami gateway set epusdt api_auth_token=…`",
                            code="gateway_misconfigured")
        amount = go_number(money.quantize(order.amount, self.currency))
        fields = {"order_id": order.order_no, "notify_url": urls.notify, "redirect_url": urls.ret}
        signature = epusdt_sign({**fields, "amount": amount}, token)
        # The amount goes out as a JSON number with exactly the text that was signed.
        body = json.dumps({**fields, "signature": signature})[:-1] + f', "amount": {amount}}}'
        data = self._call("POST", self.create_path, order.order_no, content=body.encode(),
                          headers={"Content-Type": "application/json"})
        pay_url, trade_id = data.get("payment_url"), data.get("trade_id")
        if not isinstance(pay_url, str) or not pay_url.startswith(("https://", "http://")) \
                or not isinstance(trade_id, str) or not trade_id:
            raise KamiError(f"epusdt create for {order.order_no}: the answer has no payment_url or trade_id",
                            code="gateway_refused")
        return PaymentAction(type="redirect", url=pay_url, gateway_ref=trade_id)

    # -- notify -----------------------------------------------------------------------------

    def parse_notification(self, request: HttpRequest) -> Notice:
        token = self._token()
        if not token:
            raise VerificationFailed("epusdt api_auth_token is empty: every notification is refused until "
                                     "`kami gateway set epusdt api_auth_token=…` stores it")
        fields = signed_fields(request.body, sender="Epusdt")
        given = fields.get("signature") or ""
        if not hmac.compare_digest(epusdt_sign(fields, token).encode(), given.lower().encode("utf-8", "replace")):
            raise VerificationFailed("bad signature")
        order_no, trade_no = fields.get("order_id") or "", fields.get("trade_id") or ""
        if not order_no or not trade_no:
            raise VerificationFailed("malformed notification: order_id and trade_id are required")
        try:
            amount = money.parse_amount(fields.get("amount"), field="amount")
        except BadInput as exc:
            raise VerificationFailed(f"malformed notification: {exc}") from None
        return Notice(order_no=order_no, trade_no=trade_no, amount=amount, currency=self.currency,
                      paid=fields.get("status") == PAID, raw=fields)

    def acknowledge(self, ok: bool) -> HttpResponse:
        # Exactly `ok` with HTTP 200: Epusdt wants the body, its fork and BEpusdt also the status.
        return HttpResponse("ok" if ok else "fail", status=200 if ok else 400, content_type="text/plain")

    # -- query ------------------------------------------------------------------------------

    def query(self, order: OrderInfo) -> Notice | None:
        """Ask `/pay/check-status/{trade_id}` (the checkout page's own poll). It carries no amount:
        the trade was created, signed, for exactly the order's amount, so that is what it is for."""
        if not order.gateway_ref:
            return None  # created before Kami kept the trade id: nothing to ask about
        data = self._call("GET", f"/pay/check-status/{quote(order.gateway_ref, safe='')}", order.order_no)
        if data is None:
            return None
        if str(data.get("trade_id", "")) != order.gateway_ref:
            raise KamiError(f"epusdt query for {order.order_no}: the answer is about another trade", code="gateway_refused")
        status = data.get("status")
        return Notice(order_no=order.order_no, trade_no=order.gateway_ref, amount=order.amount, currency=self.currency,
                      paid=str(status) == PAID and not isinstance(status, bool), raw=data)

    # -- helpers ----------------------------------------------------------------------------

    def _call(self, method: str, path: str, order_no: str, **kwargs) -> dict | None:
        """One request to the instance; its `data` object. None: the instance has no such order."""
        what = f"epusdt {'create' if method == 'POST' else 'query'} for {order_no}"
        try:
            response = httpx.request(method, self.base_url + path, timeout=TIMEOUT_SECONDS, **kwargs)
        except httpx.HTTPError as exc:
            host = urlsplit(self.base_url).netloc
            raise Retryable(f"{what}: {type(exc).__name__} talking to {host}; will retry") from None
        if response.status_code >= 500:
            raise Retryable(f"{what}: the instance answered HTTP {response.status_code}; will retry")
        try:
            answer = response.json()
        except ValueError:
            answer = None
        if not isinstance(answer, dict):
            raise KamiError(f"{what}: the instance answered HTTP {response.status_code} without JSON at {path}; "
                            "check url and create_path (kami gateway list)", code="gateway_refused")
        code = str(answer.get("status_code", response.status_code))
        if code == "10008" and method == "GET":
            return None  # 订单不存在
        if code != "200" or not isinstance(answer.get("data"), dict):
            hint = _REFUSALS.get(code, f"message {str(answer.get('message', ''))[:100]!r}")
            raise KamiError(f"{what} refused (code {code[:10]}): {hint}", code="gateway_refused")
        return answer["data"]

    def _token(self) -> str:
        token = self.secrets.get("api_auth_token", "")
        return token if isinstance(token, str) and token.strip() else ""


def signed_fields(raw: bytes, *, sender: str) -> dict[str, str]:
    """A JSON object body as `{name: exact text}`: numbers keep the text they were sent as
    (what the sender signed), null stays None. A name sent twice, a list, an object, NaN or
    anything that is not a JSON object is refused: no signed value is ever picked or coerced."""
    try:
        data = json.loads(raw, parse_float=str, parse_int=str, parse_constant=_refuse_constant,
                          object_pairs_hook=_no_duplicates)
    except (ValueError, RecursionError):
        raise VerificationFailed(f"malformed notification: the body is not the JSON {sender} sends") from None
    if not isinstance(data, dict):
        raise VerificationFailed("malformed notification: the body is not a JSON object")
    fields: dict[str, str] = {}
    for name, value in data.items():
        if isinstance(value, bool):
            value = "true" if value else "false"
        elif value is not None and not isinstance(value, str):
            raise VerificationFailed(f"malformed notification: field {name[:40]!r} is a {type(value).__name__}, "
                                     f"{sender} sends single values only")
        fields[name] = value
    return fields


def _refuse_constant(name: str):
    raise ValueError(f"{name} is not a number")


def _no_duplicates(pairs: list[tuple[str, object]]) -> dict:
    result = {}
    for name, value in pairs:
        if name in result:
            raise ValueError(f"field {name!r} sent twice")
        result[name] = value
    return result
