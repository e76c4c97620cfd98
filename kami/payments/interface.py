"""The one interface every gateway module implements (DESIGN.md §4).

Gateway modules import nothing from the models: they receive plain values (`OrderInfo`), the
settings they were configured with, and the notification as plain values (`Inbound`: method,
headers, query, body, sender), and give back plain values (`Notice`, and `Reply` for the
acknowledgement). Nothing here or in a gateway module speaks Django's HTTP.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from decimal import Decimal
from typing import ClassVar

from django.utils.functional import Promise

from kami.core.errors import KamiError
from kami.core.inbound import Inbound, Reply

__all__ = ["Gateway", "Inbound", "Notice", "OrderInfo", "PaymentAction", "RefundResult", "Reply", "Urls"]


@dataclass(frozen=True)
class OrderInfo:
    order_no: str
    amount: Decimal
    currency: str
    subject: str
    email: str
    expires_at: object = None  # aware datetime
    gateway_ref: str = ""  # the id the gateway gave at creation (PaymentAction.gateway_ref), if any


@dataclass(frozen=True)
class Urls:
    notify: str  # absolute URL the gateway calls: {base}/pay/<gateway>/notify
    ret: str  # where the buyer's browser comes back to: the order page's token-less return URL


@dataclass(frozen=True)
class PaymentAction:
    type: str  # "redirect" | "qr" | "form"
    url: str = ""
    qr: str = ""
    fields: dict = field(default_factory=dict)
    gateway_ref: str = ""  # an id the gateway gave us at creation, when it has one

    def as_json(self) -> dict:
        data = {"type": self.type}
        if self.url:
            data["url"] = self.url
        if self.qr:
            data["qr"] = self.qr
        if self.fields:
            data["fields"] = self.fields
        return data


@dataclass(frozen=True)
class Notice:
    """A verified, normalised notification: what the gateway says happened."""

    order_no: str
    trade_no: str
    amount: Decimal
    currency: str
    paid: bool
    raw: dict = field(default_factory=dict, repr=False)


@dataclass(frozen=True)
class RefundResult:
    """What the gateway said about a refund request. `done` False with `pending` True: accepted,
    the money moves later (the gateway notifies or the query shows it)."""

    refund_no: str  # our idempotency key, sent to the gateway
    gateway_ref: str = ""  # the gateway's refund id, when it gives one
    done: bool = True
    pending: bool = False
    raw: dict = field(default_factory=dict, repr=False)


class Gateway(ABC):
    """Base class. Subclasses set the class attributes and implement the methods they support."""

    name: ClassVar[str]  # internal: URLs, settings, the database; never shown to a buyer
    # What the buyer sees as the payment choice, in their language: gettext_lazy("Alipay") → 支付宝;
    # a plain string where the name is the same in every language ("PayPal").
    label: ClassVar[str | Promise]
    notify_methods: ClassVar[tuple[str, ...]] = ("POST",)
    # parse_notification needs nothing but the request and the settings (no certificate to fetch,
    # no capture to make): an event-loop edge may verify it in place (kami/asgi.py).
    verifies_offline: ClassVar[bool] = False
    # The settings a gateway takes: required ones must be set before it can be enabled; any name
    # in none of the four lists is refused as a typo when settings are saved. Secrets are stored
    # encrypted and never shown back; config is shown in `kami gateway list` and the back office.
    required_config: ClassVar[tuple[str, ...]] = ()
    optional_config: ClassVar[tuple[str, ...]] = ()
    required_secrets: ClassVar[tuple[str, ...]] = ()
    optional_secrets: ClassVar[tuple[str, ...]] = ()
    currencies: ClassVar[tuple[str, ...] | None] = None  # None: any currency
    # Names of request fields/headers that carry secrets and are redacted before storage.
    redact_fields: ClassVar[tuple[str, ...]] = ()

    def __init__(self, *, config: dict, secrets: dict):
        self.config = config
        self.secrets = secrets

    @classmethod
    def secret_names(cls) -> tuple[str, ...]:
        return (*cls.required_secrets, *cls.optional_secrets)

    @classmethod
    def setting_names(cls) -> tuple[str, ...]:
        """Every name the gateway takes, config then secrets: what `kami gateway set` accepts."""
        return (*cls.required_config, *cls.optional_config, *cls.secret_names())

    @classmethod
    def config_clean(cls, config: dict) -> dict:
        """Normalise and check the (non-secret) settings as they are saved; BadInput says what to
        fix. Gateways with settings to check override it."""
        return dict(config)

    @abstractmethod
    def create_payment(self, order: OrderInfo, urls: Urls) -> PaymentAction:
        ...

    @abstractmethod
    def parse_notification(self, inbound: Inbound) -> Notice:
        """Verify and normalise; raise `VerificationFailed` on anything that does not check out.
        Header names are looked up in any case (`inbound.headers` folds them)."""
        ...

    @abstractmethod
    def acknowledge(self, ok: bool) -> Reply:
        """The exact status and body the gateway expects for a notification taken (ok) or not."""
        ...

    def query(self, order: OrderInfo) -> Notice | None:
        """Ask the gateway about an order (reconciliation). None: the gateway has no record."""
        return None

    supports_refund: ClassVar[bool] = False

    supports_close: ClassVar[bool] = False

    def close(self, *, order: OrderInfo) -> None:
        """Close an unpaid payment at the gateway after the order expired, so the buyer cannot pay
        it any more. Gateways without a close API do nothing. Raises `Retryable` on trouble."""

    def check(self) -> list[str]:
        """Problems found offline in the settings (keys that do not parse, a key pair that does
        not match…), each a sentence saying what to fix. Modules with keys to check override it."""
        return []

    def refund(self, *, order: OrderInfo, trade_no: str, amount: Decimal, refund_no: str, reason: str = "") -> RefundResult:
        """Refund `amount` of trade `trade_no`. `refund_no` is our idempotency key: asking again
        with the same one must not refund twice. Raises `Retryable` on gateway trouble and
        `KamiError` when the gateway refuses (the message says why)."""
        raise KamiError(f"{self.name} has no refund API: refund the buyer by hand", code="refund_unsupported")

    def supports_currency(self, currency: str) -> bool:
        return self.currencies is None or currency.upper() in self.currencies
