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

from decimal import Decimal
from urllib.parse import quote


from kami.core import money
from kami.core.errors import BadInput, KamiError, VerificationFailed
from kami.payments.interface import Gateway, Inbound, Notice, OrderInfo, PaymentAction, Reply, Urls
from kami.payments.toolkit import (api_url_problems, api_url_required, currency_required, flat_notice, http_send,
                                   instance_config_clean, json_answer, json_fields, json_with_number, md5_hex,
                                   redirect_action, retry_on_trouble, same_signature, secret_required, secret_text,
                                   signed_pairs, text_reply)

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
    return md5_hex(signed_pairs(fields, unsigned=("signature",), by_pair=True) + token)


def go_number(amount: Decimal) -> str:
    """`amount` as Go prints a float64 with FormatFloat(f, 'f', -1, 64): 29.90 -> 29.9, 42.00 -> 42."""
    text = format(amount, "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


class EpusdtGateway(Gateway):
    name = "epusdt"
    label = "USDT (TRC-20)"  # the same in every language
    verifies_offline = True
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
        config = instance_config_clean(config, gateway="epusdt", text=("url", "create_path", "currency"),
                                       should="your Epusdt instance's address, like https://usdt.example.com")
        if config.get("create_path"):
            path = config["create_path"]
            if not path.startswith("/") or "?" in path or "#" in path or " " in path:
                raise BadInput(f"epusdt: create_path {path!r} should be a path like {CREATE_PATH} "
                               "(GMwallet: /payments/epusdt/v1/order/create-transaction)")
        return config

    def check(self) -> list[str]:
        return api_url_problems(self.base_url, gateway=self.name)

    # -- create -----------------------------------------------------------------------------

    def create_payment(self, order: OrderInfo, urls: Urls) -> PaymentAction:
        currency_required(order, self.currency, gateway="epusdt")
        token = secret_required(self.secrets, "api_auth_token", gateway="epusdt")
        amount = go_number(money.quantize(order.amount, self.currency))
        fields = {"order_id": order.order_no, "notify_url": urls.notify, "redirect_url": urls.ret}
        signature = epusdt_sign({**fields, "amount": amount}, token)
        # The amount goes out as a JSON number with exactly the text that was signed.
        body = json_with_number({**fields, "signature": signature}, "amount", amount)
        data = self._call("POST", self.create_path, order.order_no, content=body,
                          headers={"Content-Type": "application/json"})
        return redirect_action(data.get("payment_url"), data.get("trade_id"), what=f"epusdt create for {order.order_no}",
                               missing="payment_url or trade_id")

    # -- notify -----------------------------------------------------------------------------

    def parse_notification(self, inbound: Inbound) -> Notice:
        token = self._token()
        if not token:
            raise VerificationFailed("epusdt api_auth_token is empty: every notification is refused until "
                                     "`kami gateway set epusdt api_auth_token=…` stores it")
        fields = json_fields(inbound.body, sender="Epusdt")
        if not same_signature(epusdt_sign(fields, token), fields.get("signature")):
            raise VerificationFailed("bad signature")
        return flat_notice(fields, order_field="order_id", trade_field="trade_id", amount_field="amount",
                           currency=self.currency, paid=fields.get("status") == PAID)

    def acknowledge(self, ok: bool) -> Reply:
        # Exactly `ok` with HTTP 200: Epusdt wants the body, its fork and BEpusdt also the status.
        return text_reply(ok, success="ok")

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
        api_url_required(self.base_url, gateway="epusdt")
        response = http_send(method, self.base_url + path, what=what, timeout=TIMEOUT_SECONDS, **kwargs)
        retry_on_trouble(response, what=what, who="the instance")
        answer = json_answer(response, what=what, refused=f"the instance answered HTTP {response.status_code} without "
                             f"JSON at {path}; check url and create_path (kami gateway list)")
        code = str(answer.get("status_code", response.status_code))
        if code == "10008" and method == "GET":
            return None  # 订单不存在
        if code != "200" or not isinstance(answer.get("data"), dict):
            hint = _REFUSALS.get(code, f"message {str(answer.get('message', ''))[:100]!r}")
            raise KamiError(f"{what} refused (code {code[:10]}): {hint}", code="gateway_refused")
        return answer["data"]

    def _token(self) -> str:
        return secret_text(self.secrets, "api_auth_token")

