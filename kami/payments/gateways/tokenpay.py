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

import re


from kami.core import money
from kami.core.errors import BadInput, KamiError, VerificationFailed
from kami.payments.interface import Gateway, Inbound, Notice, OrderInfo, PaymentAction, Reply, Urls
from kami.payments.toolkit import (api_url_problems, api_url_required, flat_notice, http_send, instance_config_clean,
                                   json_answer, json_fields, json_with_number, md5_hex, redirect_action,
                                   retry_on_trouble, same_signature, secret_required, secret_text, signed_pairs,
                                   text_reply)

PAID = "1"  # 0 pending, 1 paid, 2 expired
TIMEOUT_SECONDS = 10
_COIN_RE = re.compile(r"^[A-Za-z0-9_]{2,64}$")
_NO_SUCH_ORDER = "订单不存在"


def tokenpay_sign(fields: dict[str, str], token: str) -> str:
    """The TokenPay MD5 signature of `fields` (values as the exact text that is sent)."""
    return md5_hex(signed_pairs(fields, unsigned=("Signature",)) + token)


class TokenPayGateway(Gateway):
    name = "tokenpay"
    label = "USDT / TRX"  # the same in every language
    verifies_offline = True
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
        config = instance_config_clean(config, gateway="tokenpay", text=("url", "currency", "fiat"), currency="fiat",
                                       should="your TokenPay site's address, like https://tokenpay.example.com")
        if config.get("currency") and not _COIN_RE.match(config["currency"]):
            raise BadInput(f"tokenpay: currency {config['currency']!r} should be the coin the buyer pays in, "
                           "as TokenPay names it: USDT_TRC20, TRX, EVM_BSC_USDT_BEP20…")
        return config

    def check(self) -> list[str]:
        return api_url_problems(self.base_url, gateway=self.name)

    # -- create -----------------------------------------------------------------------------

    def create_payment(self, order: OrderInfo, urls: Urls) -> PaymentAction:
        if order.currency.upper() != self.fiat:
            raise BadInput(f"tokenpay charges in {self.fiat} (its BaseCurrency), the order is in {order.currency}")
        token = secret_required(self.secrets, "api_token", gateway="tokenpay")
        amount = format(money.quantize(order.amount, self.fiat), "f")
        fields = {"OutOrderId": order.order_no, "OrderUserKey": order.email or order.order_no, "Currency": self.coin,
                  "NotifyUrl": urls.notify, "RedirectUrl": urls.ret}
        fields["Signature"] = tokenpay_sign({**fields, "ActualAmount": amount}, token)
        # ActualAmount goes out as a JSON number with exactly the text that was signed.
        body = json_with_number(fields, "ActualAmount", amount, ensure_ascii=False)
        answer = self._call("POST", "/CreateOrder", order.order_no, content=body,
                            headers={"Content-Type": "application/json"})
        if answer.get("success") is not True:
            raise KamiError(f"tokenpay create for {order.order_no} refused: {_message(answer)}; if it is about the "
                            "signature, api_token must equal TokenPay's ApiToken", code="gateway_refused")
        info = answer.get("info")
        return redirect_action(answer.get("data"), info.get("Id") if isinstance(info, dict) else None,
                               what=f"tokenpay create for {order.order_no}", missing="pay page or Id")

    # -- notify -----------------------------------------------------------------------------

    def parse_notification(self, inbound: Inbound) -> Notice:
        token = self._token()
        if not token:
            raise VerificationFailed("tokenpay api_token is empty: every notification is refused until "
                                     "`kami gateway set tokenpay api_token=…` stores it")
        fields = json_fields(inbound.body, sender="TokenPay")
        if not same_signature(tokenpay_sign(fields, token), fields.get("Signature")):
            raise VerificationFailed("bad signature")
        return self._notice(fields, what="notification")

    def acknowledge(self, ok: bool) -> Reply:
        return text_reply(ok, success="ok")

    # -- query ------------------------------------------------------------------------------

    def query(self, order: OrderInfo) -> Notice | None:
        """Ask `/Query` about TokenPay's order `Id` (kept at creation as gateway_ref)."""
        if not order.gateway_ref:
            return None  # created before Kami kept TokenPay's Id: nothing to ask about
        signature = md5_hex(f"Id={order.gateway_ref}{self._token()}")
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
        return flat_notice(fields, order_field="OutOrderId", trade_field="Id", amount_field="ActualAmount",
                           currency=self.fiat, paid=fields.get("Status") == PAID, what=what)

    def _call(self, method: str, path: str, order_no: str, **kwargs) -> dict:
        """One request to TokenPay; its JSON answer, numbers kept as their text."""
        what = f"tokenpay {'create' if method == 'POST' else 'query'} for {order_no}"
        api_url_required(self.base_url, gateway="tokenpay")
        response = http_send(method, self.base_url + path, what=what, timeout=TIMEOUT_SECONDS, **kwargs)
        retry_on_trouble(response, what=what, who="TokenPay")
        return json_answer(response, what=what, numbers_as_text=True,
                           refused=f"TokenPay answered HTTP {response.status_code} without JSON at {path}; "
                                   "check url (kami gateway list)")

    def _token(self) -> str:
        return secret_text(self.secrets, "api_token")


def _message(answer: dict) -> str:
    return str(answer.get("message", ""))[:100]
