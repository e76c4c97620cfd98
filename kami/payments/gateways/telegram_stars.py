"""Telegram Stars (XTR): what Telegram asks bots that sell digital goods to take.

The order's amount is converted at the merchant's rate (`stars_per_unit`: Stars per one unit of
the order's currency, rounded up to whole Stars). The invoice (createInvoiceLink here; the bot
sends the same invoice inline with sendInvoice) carries `<order no>|<amount>|<currency>` as its
payload, and Telegram hands the payload back in the `successful_payment` update, which reaches
Kami through the bot's webhook (or long poll) signed with the secret-token header derived from
the bot token. The notification is that update: the total must be the Stars the payload's amount
costs, or the notice carries the Stars' worth and the order is flagged (a rate changed between
invoice and payment, say). The gateway is named `stars` (module telegram_stars). The trade
number is `<payer's user id>:<telegram_payment_charge_id>`: the charge id is Telegram's unique id
for the payment, and refundStarPayment needs the payer too.
"""
from __future__ import annotations

import hashlib
import hmac
import json
from decimal import ROUND_CEILING, Decimal, InvalidOperation

from django.conf import settings

from kami.core import money
from kami.core.errors import BadInput, KamiError, VerificationFailed
from kami.payments.interface import Gateway, Inbound, Notice, OrderInfo, PaymentAction, RefundResult, Reply, Urls
from kami.payments.toolkit import http_send, httpx_log_redact, json_answer, retry_on_trouble, secret_required

SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
PAYLOAD_MAX = 128


def webhook_secret(token: str) -> str:
    """What Telegram sends back in SECRET_HEADER: derived from the bot token (no second secret to
    store; a new token changes it). The bot's webhook uses the same derivation."""
    return hmac.new(token.encode(), b"kami telegram webhook", hashlib.sha256).hexdigest()


def stars_for(amount: Decimal, rate: Decimal) -> int:
    return int((amount * rate).to_integral_value(rounding=ROUND_CEILING))


def invoice_payload(order: OrderInfo) -> str:
    return f"{order.order_no}|{order.amount}|{order.currency}"[:PAYLOAD_MAX]


class TelegramStarsGateway(Gateway):
    name = "stars"
    label = "Telegram Stars"
    required_config = ("stars_per_unit",)
    required_secrets = ("bot_token",)
    redact_fields = (SECRET_HEADER,)
    supports_refund = True

    @classmethod
    def config_clean(cls, config: dict) -> dict:
        config = dict(config)
        if "stars_per_unit" in config and config["stars_per_unit"] != "":
            try:
                rate = Decimal(str(config["stars_per_unit"]))
            except InvalidOperation:
                rate = Decimal(0)
            if not rate.is_finite() or rate <= 0:
                raise BadInput("stars_per_unit: Stars per one unit of the shop's currency, a positive number, e.g. 7")
            config["stars_per_unit"] = str(rate)
        return config

    def rate(self) -> Decimal:
        return Decimal(str(self.config.get("stars_per_unit") or "0"))

    def invoice(self, order: OrderInfo) -> dict:
        """The invoice's fields as the Bot API takes them (sendInvoice, createInvoiceLink)."""
        stars = stars_for(order.amount, self.rate())
        if stars < 1:
            raise KamiError("stars: stars_per_unit is not set: `kami telegram set stars=7`",
                            code="gateway_misconfigured")
        return {"title": order.subject[:32] or order.order_no, "description": f"{order.subject[:200]} ({order.order_no})",
                "payload": invoice_payload(order), "currency": "XTR", "provider_token": "",
                "prices": json.dumps([{"label": order.subject[:32] or order.order_no, "amount": stars}])}

    def create_payment(self, order: OrderInfo, urls: Urls) -> PaymentAction:
        link = self._call("createInvoiceLink", self.invoice(order))
        if not isinstance(link, str) or not link.startswith("https://"):
            raise KamiError("stars: createInvoiceLink gave no link", code="gateway_refused")
        return PaymentAction(type="redirect", url=link)

    def parse_notification(self, inbound: Inbound) -> Notice:
        token = self.secrets.get("bot_token", "")
        given = inbound.headers.get(SECRET_HEADER, "").encode("utf-8", "replace")
        if not token or not hmac.compare_digest(given, webhook_secret(token).encode()):
            raise VerificationFailed("bad or missing X-Telegram-Bot-Api-Secret-Token")
        try:
            update = json.loads(inbound.body)
            message = update["message"]
            paid, payer = message["successful_payment"], int(message["from"]["id"])
            order_no, amount, currency = str(paid["invoice_payload"]).split("|")
            amount, total = money.parse_amount(amount), int(paid["total_amount"])
            charge = str(paid["telegram_payment_charge_id"])
        except (ValueError, KeyError, TypeError, BadInput):
            raise VerificationFailed("not a successful_payment update of a Kami invoice") from None
        if paid.get("currency") != "XTR" or total != stars_for(amount, self.rate()):
            # Paid another number of Stars than the order costs: its worth goes on, so confirm flags it.
            amount = (Decimal(total) / self.rate()).quantize(Decimal("0.01")) if self.rate() > 0 else Decimal(0)
        return Notice(order_no=order_no, trade_no=f"{payer}:{charge}", amount=amount, currency=currency, paid=True,
                      raw={"update_id": update.get("update_id"), "total_amount": total})

    def acknowledge(self, ok: bool) -> Reply:
        # Telegram delivers the update again after any answer but 2xx.
        return Reply(status_code=200) if ok else Reply(status_code=400, content=b"retry")

    def refund(self, *, order: OrderInfo, trade_no: str, amount: Decimal, refund_no: str, reason: str = "") -> RefundResult:
        payer, _, charge = trade_no.partition(":")
        if amount != order.amount:
            raise KamiError("stars refunds the whole payment only", code="refund_unsupported")
        self._call("refundStarPayment", {"user_id": payer, "telegram_payment_charge_id": charge})
        return RefundResult(refund_no=refund_no, gateway_ref=charge)

    def _call(self, method: str, data: dict) -> object:
        token = secret_required(self.secrets, "bot_token", gateway=self.name)
        base = settings.KAMI_TELEGRAM_API_BASE.rstrip("/")  # a test may set it with a trailing slash
        what = f"stars {method}"
        response = http_send("POST", f"{base}/bot{token}/{method}", what=what, data=data)
        retry_on_trouble(response, what=what, who="Telegram", also=(429,))
        answer = json_answer(response, what=what, refused="Telegram's answer is not JSON")
        if answer.get("ok") is not True:
            description = " ".join(str(answer.get("description", ""))[:160].replace(token, "***").split())
            raise KamiError(f"{what}: Telegram refused: {description}", code="gateway_refused")
        return answer.get("result")


httpx_log_redact("telegram bot token", r"/bot[^/\s]+/", "/bot***/")  # httpx logs each URL; this one carries the token
