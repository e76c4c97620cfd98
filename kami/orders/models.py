from __future__ import annotations

from django.db import models
from django.utils.translation import gettext_lazy as _


class Order(models.Model):
    class Status(models.TextChoices):
        PENDING = "pending"
        FULFILLED = "fulfilled"
        AWAITING_STOCK = "awaiting_stock"
        AWAITING_MANUAL = "awaiting_manual"  # paid, a `manual` product: staff deliver it (docs/catalog.md)
        EXPIRED = "expired"
        REFUNDED = "refunded"
        FLAGGED = "flagged"

    order_no = models.CharField(max_length=32, unique=True)
    product = models.ForeignKey("catalog.Product", on_delete=models.PROTECT, related_name="orders")
    email = models.EmailField(max_length=254)
    quantity = models.PositiveIntegerField()
    unit_price = models.DecimalField(max_digits=14, decimal_places=2)
    amount = models.DecimalField(max_digits=14, decimal_places=2)
    currency = models.CharField(max_length=5)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    gateway = models.CharField(max_length=32)
    # The gateway's own id for this payment, when it gives one at creation (Stripe session,
    # PayPal order, TokenPay Id…): reconciliation and refunds ask about it.
    gateway_ref = models.CharField(max_length=128, blank=True, default="")
    token_hash = models.CharField(max_length=64)
    # The buyer's optional lookup password, salted and slow-hashed (make_password); "" when the
    # buyer set none, and then the order is never found by email + password.
    lookup_hash = models.CharField(max_length=128, blank=True, default="")
    locale = models.CharField(max_length=10, default="zh-hans")
    buyer_ip = models.GenericIPAddressField(null=True, blank=True)
    created_at = models.DateTimeField()
    expires_at = models.DateTimeField()
    paid_at = models.DateTimeField(null=True, blank=True)
    fulfilled_at = models.DateTimeField(null=True, blank=True)
    flag_reason = models.CharField(max_length=255, blank=True, default="")
    # The coupon redeemed by this order (one use, taken at creation, given back if it expires
    # unpaid) and what it took off; amount = unit_price × quantity − discount.
    coupon = models.ForeignKey("catalog.Coupon", null=True, blank=True, on_delete=models.PROTECT, related_name="orders")
    discount = models.DecimalField(max_digits=14, decimal_places=2, default=0)
    # What the buyer filled in for the product's custom fields: {name: text}.
    custom_values = models.JSONField(default=dict, blank=True)

    class Meta:
        verbose_name = _("order")
        verbose_name_plural = _("orders")
        indexes = [
            models.Index(fields=["status", "paid_at"], name="order_status_paid"),
            models.Index(fields=["status", "expires_at"], name="order_status_expiry"),
            models.Index(fields=["email"], name="order_email"),
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

    order = models.ForeignKey(Order, on_delete=models.PROTECT, related_name="order_keys")
    key = models.ForeignKey("stock.Key", on_delete=models.PROTECT, related_name="order_keys")
    exclusive_key = models.OneToOneField(
        "stock.Key", null=True, blank=True, on_delete=models.PROTECT, related_name="exclusive_order_key"
    )
    position = models.PositiveIntegerField(default=0)

    class Meta:
        verbose_name = _("order key")
        verbose_name_plural = _("order keys")
        constraints = [models.UniqueConstraint(fields=["order", "key"], name="orderkey_once_per_order")]
        ordering = ["order_id", "position"]


class OrderEvent(models.Model):
    """Append-only history of an order."""

    order = models.ForeignKey(Order, on_delete=models.CASCADE, related_name="events")
    at = models.DateTimeField()
    kind = models.CharField(max_length=40)
    detail = models.JSONField(default=dict, blank=True)

    class Meta:
        verbose_name = _("order event")
        verbose_name_plural = _("order events")
        ordering = ["at", "id"]
