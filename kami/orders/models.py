from __future__ import annotations

from django.db import models
from django.utils.translation import gettext_lazy as _, pgettext_lazy


def email_normalise(email: str) -> str:
    """The one form of an email that per-email limits and lookups compare: trimmed, lower-cased,
    its domain read as mail is sent to it (IDNA: NFKC, zero-width characters dropped), so
    `Buyer@ＥＸＡＭＰＬＥ.com`, whose keys go to buyer@example.com, is found as buyer@example.com."""
    local, at, domain = email.strip().rpartition("@")
    if at:
        try:
            domain = domain.encode("idna").decode("idna")
        except UnicodeError:  # a domain IDNA cannot read (no order has one: checkout refuses it)
            pass
    return f"{local}{at}{domain}".lower()


class Order(models.Model):
    class Status(models.TextChoices):
        PENDING = "pending", pgettext_lazy("order status", "Pending payment")
        FULFILLED = "fulfilled", pgettext_lazy("order status", "Fulfilled")
        AWAITING_STOCK = "awaiting_stock", pgettext_lazy("order status", "Awaiting stock")
        # Paid, a `manual` product: staff deliver it (docs/catalog.md).
        AWAITING_MANUAL = "awaiting_manual", pgettext_lazy("order status", "Awaiting manual delivery")
        EXPIRED = "expired", pgettext_lazy("order status", "Expired")
        REFUNDED = "refunded", pgettext_lazy("order status", "Refunded")
        FLAGGED = "flagged", pgettext_lazy("order status", "Flagged")

    order_no = models.CharField(verbose_name=_("order number"), max_length=32, unique=True)
    product = models.ForeignKey("catalog.Product", verbose_name=_("product"), on_delete=models.PROTECT,
                                related_name="orders")
    email = models.EmailField(verbose_name=_("email"), max_length=254)
    # `email` trimmed and lower-cased (email_normalise above): what per-email limits and
    # lookups compare, through an index (a case-insensitive match on `email` is served by none).
    email_norm = models.CharField(verbose_name=_("email (normalised)"), max_length=254, blank=True, default="",
                                  editable=False)
    quantity = models.PositiveIntegerField(verbose_name=_("quantity"))
    unit_price = models.DecimalField(verbose_name=_("unit price"), max_digits=14, decimal_places=2)
    amount = models.DecimalField(verbose_name=_("amount"), max_digits=14, decimal_places=2)
    currency = models.CharField(verbose_name=_("currency"), max_length=5)
    status = models.CharField(verbose_name=_("status"), max_length=16, choices=Status.choices, default=Status.PENDING)
    gateway = models.CharField(verbose_name=_("gateway"), max_length=32)
    # The gateway's own id for this payment, when it gives one at creation (Stripe session,
    # PayPal order, TokenPay Id…): reconciliation and refunds ask about it.
    gateway_ref = models.CharField(verbose_name=_("gateway reference"), max_length=128, blank=True, default="")
    token_hash = models.CharField(verbose_name=_("token hash"), max_length=64)
    # The buyer's optional lookup password, salted and slow-hashed (make_password); "" when the
    # buyer set none, and then the order is never found by email + password.
    lookup_hash = models.CharField(verbose_name=_("lookup password hash"), max_length=128, blank=True, default="")
    locale = models.CharField(verbose_name=_("language"), max_length=10, default="zh-hans")
    buyer_ip = models.GenericIPAddressField(verbose_name=_("buyer IP address"), null=True, blank=True)
    created_at = models.DateTimeField(verbose_name=_("created at"))
    expires_at = models.DateTimeField(verbose_name=_("expires at"))
    paid_at = models.DateTimeField(verbose_name=_("paid at"), null=True, blank=True)
    fulfilled_at = models.DateTimeField(verbose_name=_("fulfilled at"), null=True, blank=True)
    flag_reason = models.CharField(verbose_name=_("flag reason"), max_length=255, blank=True, default="")
    # The coupon applied to this order and what it took off; amount = unit_price × quantity −
    # discount. Its use is counted when the order is paid (fulfilment/coupon_uses.py), not before.
    coupon = models.ForeignKey("catalog.Coupon", verbose_name=_("coupon"), null=True, blank=True,
                               on_delete=models.PROTECT, related_name="orders")
    discount = models.DecimalField(verbose_name=_("discount"), max_digits=14, decimal_places=2, default=0)
    # What the buyer filled in for the product's custom fields: {name: text}.
    custom_values = models.JSONField(verbose_name=_("custom values"), default=dict, blank=True)

    class Meta:
        verbose_name = _("order")
        verbose_name_plural = _("orders")
        indexes = [
            models.Index(fields=["status", "paid_at"], name="order_status_paid"),
            models.Index(fields=["status", "expires_at"], name="order_status_expiry"),
            models.Index(fields=["email"], name="order_email"),
            models.Index(fields=["email_norm", "status"], name="order_email_norm_status"),
            models.Index(fields=["buyer_ip", "status"], name="order_ip_status"),
        ]

    def __str__(self) -> str:
        return self.order_no

    @property
    def custom_answers(self) -> list[tuple[str, str]]:
        """(label, answer) for the buyer's custom values, in the product's field order."""
        values, fields = self.custom_values or {}, self.product.custom_fields or []
        known = [(f["label"], values[f["name"]]) for f in fields if f["name"] in values]
        names = {f["name"] for f in fields}  # answers to fields removed since: by name, after the rest
        return known + [(name, value) for name, value in sorted(values.items()) if name not in names]


class OrderKey(models.Model):
    """A key handed to an order. For a `unique` product `exclusive_key` equals `key`, and its
    unique constraint makes a second sale of the same key impossible at the database level;
    for a `reusable` product it is NULL (the same key goes to many orders by design)."""

    order = models.ForeignKey(Order, verbose_name=_("order"), on_delete=models.PROTECT, related_name="order_keys")
    key = models.ForeignKey("stock.Key", verbose_name=_("key"), on_delete=models.PROTECT, related_name="order_keys")
    exclusive_key = models.OneToOneField(
        "stock.Key", verbose_name=_("exclusive key"), null=True, blank=True, on_delete=models.PROTECT,
        related_name="exclusive_order_key",
    )
    position = models.PositiveIntegerField(verbose_name=_("position"), default=0)

    class Meta:
        verbose_name = _("order key")
        verbose_name_plural = _("order keys")
        constraints = [models.UniqueConstraint(fields=["order", "key"], name="orderkey_once_per_order")]
        ordering = ["order_id", "position"]


class OrderEvent(models.Model):
    """Append-only history of an order."""

    order = models.ForeignKey(Order, verbose_name=_("order"), on_delete=models.CASCADE, related_name="events")
    at = models.DateTimeField(verbose_name=_("time"))
    kind = models.CharField(verbose_name=_("kind"), max_length=40)
    detail = models.JSONField(verbose_name=_("detail"), default=dict, blank=True)

    class Meta:
        verbose_name = _("order event")
        verbose_name_plural = _("order events")
        ordering = ["at", "id"]
