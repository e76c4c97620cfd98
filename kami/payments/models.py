from __future__ import annotations

from django.db import models
from django.utils.translation import gettext_lazy as _


class GatewayAccount(models.Model):
    """A configured gateway. `config` holds the non-secret settings; secrets (keys, tokens) are
    one JSON object encrypted with the data key and are never shown back."""

    name = models.CharField(max_length=32, unique=True)
    enabled = models.BooleanField(default=False)
    config = models.JSONField(default=dict, blank=True)
    secrets_ciphertext = models.BinaryField(null=True, blank=True)
    secrets_key_id = models.CharField(max_length=16, blank=True, default="")
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return self.name

    class Meta:
        verbose_name = _("gateway account")
        verbose_name_plural = _("gateway accounts")


class Payment(models.Model):
    """A gateway trade applied to an order. `(gateway, trade_no)` is unique: a trade is applied
    at most once, whatever the number of notifications (invariant 3)."""

    order = models.ForeignKey("orders.Order", on_delete=models.PROTECT, related_name="payments")
    gateway = models.CharField(max_length=32)
    trade_no = models.CharField(max_length=128)
    amount = models.DecimalField(max_digits=14, decimal_places=2)
    currency = models.CharField(max_length=5)
    created_at = models.DateTimeField()

    class Meta:
        verbose_name = _("payment")
        verbose_name_plural = _("payments")
        constraints = [models.UniqueConstraint(fields=["gateway", "trade_no"], name="payment_trade_once")]


class Notification(models.Model):
    """Every notification as received (secrets redacted), stored before it is processed and
    kept whatever the outcome."""

    class Result(models.TextChoices):
        RECEIVED = "received"
        REJECTED = "rejected"  # failed verification
        FULFILLED = "fulfilled"
        AWAITING_STOCK = "awaiting_stock"
        AWAITING_MANUAL = "awaiting_manual"  # a `manual` product: paid, staff deliver it
        DUPLICATE = "duplicate"
        FLAGGED = "flagged"
        UNKNOWN_ORDER = "unknown_order"
        IGNORED = "ignored"  # verified, but not a "paid" event
        ERROR = "error"  # transient failure; the gateway is asked to retry

    gateway = models.CharField(max_length=32)
    received_at = models.DateTimeField()
    method = models.CharField(max_length=8)
    remote_addr = models.CharField(max_length=64, blank=True, default="")
    headers = models.JSONField(default=dict, blank=True)
    body = models.TextField(blank=True, default="")
    verified = models.BooleanField(default=False)
    order_no = models.CharField(max_length=64, blank=True, default="")
    trade_no = models.CharField(max_length=128, blank=True, default="")
    result = models.CharField(max_length=16, choices=Result.choices, default=Result.RECEIVED)
    error = models.TextField(blank=True, default="")

    class Meta:
        verbose_name = _("gateway notification")
        verbose_name_plural = _("gateway notifications")
        indexes = [models.Index(fields=["gateway", "trade_no"], name="notification_trade")]
