"""Epay / 易支付 V1 (the 彩虹易支付 protocol, MD5 signatures).

The buyer is redirected to `{url}submit.php` with signed parameters; the site notifies
`/pay/epay/notify` by GET (the documented way) or by POST (some compatible sites), and
`{url}api.php?act=order` answers reconciliation queries. The recipe (`epay_sign`): drop
`sign`, `sign_type` and empty values, sort by key, join `k=v` with `&` (no URL-encoding),
append the merchant key, MD5 as lowercase hex. With `refund=1` set, refunds go through
`{url}api.php?act=refund` (newer 彩虹 versions); without it Kami's refunds are manual.

Field lessons this module answers: an empty merchant key must not make every forgery valid;
`trade_status` is checked; a field sent twice or as a PHP array (`money[]=`) is refused
rather than picked from; the merchant id is checked; signatures are compared in constant time.
No timestamp is signed, so a replay is caught by `(gateway, trade_no)` being applied once.
"""
from __future__ import annotations

import re
from decimal import Decimal
from urllib.parse import urlencode, urlsplit

import httpx
from django.utils.translation import gettext_lazy as _

from kami.core import money
from kami.core.errors import BadInput, KamiError, Retryable, VerificationFailed
from kami.payments.interface import Gateway, Inbound, Notice, OrderInfo, PaymentAction, RefundResult, Reply, Urls
from kami.payments.toolkit import (api_url_checked, api_url_problems, api_url_required, config_stripped,
                                   currency_required, flat_notice, http_send, httpx_log_redact, md5_hex, retry_on_trouble, same_signature, secret_text,
                                   signed_pairs, single_values, text_reply)

PAID = "TRADE_SUCCESS"
QUERY_TIMEOUT_SECONDS = 10
_UNSIGNED = ("sign", "sign_type")
_TYPE_RE = re.compile(r"^[a-z0-9_]{1,32}$")
_YES, _NO = ("1", "true", "yes", "on"), ("0", "false", "no", "off", "")
_REFUND_BY_HAND = "refund the buyer by hand in the Epay site's merchant panel"


def epay_sign(params: dict, key: str) -> str:
    """The Epay V1 MD5 signature of `params` with the merchant `key`."""
    return md5_hex(signed_pairs(params, unsigned=_UNSIGNED) + key)


class EpayGateway(Gateway):
    name = "epay"
    label = _("Epay")
    verifies_offline = True
    notify_methods = ("GET", "POST")
    required_config = ("pid", "url")
    optional_config = ("type", "currency", "refund")
    required_secrets = ("key",)
    # The signature is kept: it is no secret (it travels in the URL) and lets a stored
    # notification be re-verified later. A `key` field, should anyone send one, is not kept.
    redact_fields = ("key",)

    def __init__(self, *, config: dict, secrets: dict):
        super().__init__(config=config, secrets=secrets)
        self.pid = str(config.get("pid", ""))
        url = str(config.get("url") or "").strip()
        self.base_url = url if not url or url.endswith("/") else url + "/"  # checked by config_clean
        self.pay_type = str(config.get("type") or "alipay")
        self.currency = str(config.get("currency") or "CNY").upper()
        self.currencies = (self.currency,)
        # Only sites that have api.php?act=refund: elsewhere a refund must stay manual, not fail.
        self.supports_refund = str(config.get("refund") or "").strip().lower() in _YES

    @classmethod
    def config_clean(cls, config: dict) -> dict:
        """Normalise and check settings as they are saved (`kami gateway set epay …`)."""
        config = config_stripped(config, ("pid", "url", "type", "currency"))
        if config.get("url"):
            config["url"] = _base_url(config["url"])
        if config.get("pid") and (len(config["pid"]) > 32 or not config["pid"].isalnum()):
            raise BadInput(f"epay: pid {config['pid']!r} should be the merchant id the Epay site shows (e.g. 1001)")
        if config.get("type") and not _TYPE_RE.match(config["type"]):
            raise BadInput(f"epay: type {config['type']!r} should be a payment method such as alipay, wxpay or qqpay")
        if config.get("currency"):
            config["currency"] = money.parse_currency(config["currency"])
        if "refund" in config:
            flag = str(config["refund"] if config["refund"] is not None else "").strip().lower()
            if flag not in _YES + _NO:
                raise BadInput(f"epay: refund {flag[:20]!r} should be 1 (the site has api.php?act=refund) or 0 "
                               "(refund by hand, the default)")
            config["refund"] = "1" if flag in _YES else "0"
        return config

    def check(self) -> list[str]:
        return api_url_problems(self.base_url, gateway=self.name)

    # -- create -----------------------------------------------------------------------------

    def create_payment(self, order: OrderInfo, urls: Urls) -> PaymentAction:
        currency_required(order, self.currency, gateway="epay")
        params = {
            "pid": self.pid, "type": self.pay_type, "out_trade_no": order.order_no, "notify_url": urls.notify,
            "return_url": urls.ret, "name": order.subject or order.order_no,
            "money": format(money.quantize(order.amount, self.currency), "f"),
        }
        params["sign"] = epay_sign(params, self._key())
        params["sign_type"] = "MD5"
        return PaymentAction(type="redirect", url=f"{self.base_url}submit.php?{urlencode(params)}")

    # -- notify -----------------------------------------------------------------------------

    def parse_notification(self, inbound: Inbound) -> Notice:
        key = self._key()
        if not key:
            raise VerificationFailed("epay key is empty: every notification is refused until "
                                     "`kami gateway set epay key=…` stores the merchant key")
        params = single_values(inbound, arrays_refused_by="Epay")
        if params.get("sign_type", "MD5").upper() != "MD5":
            raise VerificationFailed(f"unsupported sign_type {params['sign_type'][:20]!r}: only MD5 is accepted")
        if not same_signature(epay_sign(params, key), params.get("sign")):
            raise VerificationFailed("bad signature")
        if params.get("pid") != self.pid:
            raise VerificationFailed(f"pid {params.get('pid', '')[:32]!r} is not this shop's merchant id {self.pid!r}")
        return flat_notice(params, order_field="out_trade_no", trade_field="trade_no", amount_field="money",
                           currency=self.currency, paid=params.get("trade_status") == PAID)

    def acknowledge(self, ok: bool) -> Reply:
        return text_reply(ok, success="success")

    # -- query ------------------------------------------------------------------------------

    def query(self, order: OrderInfo) -> Notice | None:
        """Ask `api.php?act=order` about `order`. The key travels in the URL (the protocol's
        choice), so the URL is never logged: the redaction at the end of this module masks it in httpx's log."""
        self._https_only()
        params = {"act": "order", "pid": self.pid, "key": self._key(), "out_trade_no": order.order_no}
        response = http_send("GET", f"{self.base_url}api.php", what=f"epay query for {order.order_no}", params=params,
                             timeout=QUERY_TIMEOUT_SECONDS)
        _check_status(response, order_no=order.order_no)
        try:
            data = response.json()
        except ValueError:
            raise Retryable(f"epay query for {order.order_no}: the Epay site did not answer JSON "
                            f"(HTTP {response.status_code})") from None
        return _query_notice(data, order_no=order.order_no, pid=self.pid, currency=self.currency)

    # -- refund -----------------------------------------------------------------------------

    def refund(self, *, order: OrderInfo, trade_no: str, amount: Decimal, refund_no: str, reason: str = "") -> RefundResult:
        """POST `api.php?act=refund` (newer 彩虹 versions). The key travels in the form body, never
        in the URL (httpx logs URLs only). V1 has no idempotency key: Kami always refunds the whole
        payment, so a repeat is refused by the site as already refunded, which counts as done."""
        what = f"refund {refund_no} of {order.order_no}"
        if not self.supports_refund:
            raise KamiError(f"epay {what}: refunds through the Epay site are off (kami gateway set epay refund=1 "
                            f"if it has api.php?act=refund); {_REFUND_BY_HAND}", code="refund_unsupported")
        key = self._key()
        if not key:
            raise KamiError(f"epay {what}: the merchant key is empty (kami gateway set epay key=…)",
                            code="gateway_misconfigured")
        self._https_only()
        form = {"pid": self.pid, "key": key, "out_trade_no": order.order_no,
                "money": format(money.quantize(amount, self.currency), "f")}
        if trade_no:
            form["trade_no"] = trade_no
        response = http_send("POST", f"{self.base_url}api.php", what=f"epay {what}", params={"act": "refund"}, data=form,
                             timeout=QUERY_TIMEOUT_SECONDS)
        _check_status(response, what=what)
        try:
            data = response.json()
        except ValueError:
            raise Retryable(f"epay {what}: the Epay site did not answer JSON (HTTP {response.status_code}); "
                            "will retry") from None
        if not isinstance(data, dict):
            raise Retryable(f"epay {what}: the answer is not a JSON object; will retry")
        return _refund_result(data, what=what, refund_no=refund_no, trade_no=trade_no)

    def _https_only(self) -> None:
        """The key is about to travel: never over plain http (a url stored before the rule, or
        production switched on since)."""
        api_url_required(self.base_url, gateway="epay")

    def _key(self) -> str:
        return secret_text(self.secrets, "key")


def _base_url(url: str) -> str:
    url = api_url_checked(url, gateway="epay", setting="url", should="the Epay site's address, like https://pay.example.com/")
    return url if url.endswith("/") else url + "/"


def _check_status(response: httpx.Response, *, order_no: str = "", what: str = "") -> None:
    what = what or f"query for {order_no}"
    retry_on_trouble(response, what=f"epay {what}", who="the Epay site")
    status = response.status_code
    if 300 <= status < 400:  # never followed: the key is in the URL. Name only where it points.
        target = urlsplit(response.headers.get("location", ""))
        raise KamiError(f"epay {what}: the Epay site redirects (HTTP {status}) to "
                        f"{target.scheme}://{target.netloc}{target.path}; set url to the address it redirects to "
                        "(kami gateway set epay url=…)", code="gateway_refused")
    if status >= 400:
        raise KamiError(f"epay {what}: the Epay site answered HTTP {status} for api.php; "
                        "check url (kami gateway list)", code="gateway_refused")


def _refund_result(data: dict, *, what: str, refund_no: str, trade_no: str) -> RefundResult:
    """Sites differ on the success code (1 in V1, 0 in some forks), so `msg` decides with it:
    code 1 unless msg says it failed, code 0 only when msg says it succeeded."""
    code, msg = str(data.get("code", "")).strip(), str(data.get("msg", ""))[:200]
    lowered = msg.lower()
    succeeded = "成功" in msg or "success" in lowered
    failed = "失败" in msg or "fail" in lowered or "error" in lowered
    if (code == "1" and not failed) or (code == "0" and succeeded and not failed):
        return RefundResult(refund_no=refund_no, gateway_ref=trade_no, done=True, raw=data)
    if "已退款" in msg or "已全额退款" in msg:  # a repeat: the whole payment went back the first time
        return RefundResult(refund_no=refund_no, gateway_ref=trade_no, done=True, raw=data)
    if code == "-4" or "no act" in lowered or "不支持" in msg:
        raise KamiError(f"epay {what}: this Epay site has no refund API (code {code!r}, {msg!r}); {_REFUND_BY_HAND} "
                        "and set `kami gateway set epay refund=0`", code="refund_unsupported")
    raise KamiError(f"epay {what} refused (code {code!r}, {msg!r}); check pid and key (kami gateway list), or "
                    f"{_REFUND_BY_HAND}", code="refund_failed")


def _query_notice(data: object, *, order_no: str, pid: str, currency: str) -> Notice | None:
    if not isinstance(data, dict):
        raise Retryable(f"epay query for {order_no}: the answer is not a JSON object")
    code = data.get("code")
    if code == -1 or code == "-1":
        return None  # 订单号不存在: the Epay site has no such order
    if code != 1 and code != "1":
        msg = str(data.get("msg", ""))[:100]
        raise KamiError(f"epay query for {order_no} refused (code {code!r}, {msg!r}): check pid and key with "
                        "`kami gateway list` / `kami gateway set epay pid=… key=…`", code="gateway_refused")
    # V1 answers are not signed: what stands behind one is https (enforced), the pid and key we
    # sent, the answer naming this order and this merchant, and the amount check in confirm.
    if str(data.get("out_trade_no", "")) != order_no or str(data.get("pid", "")) != pid:
        raise KamiError(f"epay query for {order_no}: the answer is about another order or merchant (or names "
                        "no pid); this order is left to its notification", code="gateway_refused")
    trade_no, status, amount = data.get("trade_no"), data.get("status"), data.get("money")
    if isinstance(amount, (int, float)) and not isinstance(amount, bool):
        amount = str(amount)  # some sites send a JSON number; parse_amount still refuses 1e-05, nan, inf
    try:
        value = money.parse_amount(amount, field="money")
    except BadInput as exc:
        raise KamiError(f"epay query for {order_no}: {exc}", code="gateway_refused") from None
    trade_no = str(trade_no) if isinstance(trade_no, (str, int)) and not isinstance(trade_no, bool) else ""
    if not trade_no or len(trade_no) > 128 or not trade_no.isprintable():
        raise KamiError(f"epay query for {order_no}: the answer has no usable trade_no", code="gateway_refused")
    return Notice(order_no=order_no, trade_no=trade_no, amount=Decimal(value), currency=currency,
                  paid=status in (1, "1"), raw=data)


# The query URL carries the merchant key (the protocol's choice): httpx logs every request URL at INFO.
httpx_log_redact("epay key", r"([?&]key=)[^&\s\"]*", r"\1[redacted]")
