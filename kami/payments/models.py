from __future__ import annotations

from django.db import models
from django.utils.translation import gettext_lazy as _


class GatewayAccount(models.Model):
    """A configured gateway. `config` holds the non-secret settings; secrets (keys, tokens) are
    one JSON object encrypted with the data key and are never shown back."""

    name = models.CharField(verbose_name=_("name"), max_length=32, unique=True)
    enabled = models.BooleanField(verbose_name=_("enabled"), default=False)
    config = models.JSONField(verbose_name=_("settings"), default=dict, blank=True)
    secrets_ciphertext = models.BinaryField(verbose_name=_("encrypted secrets"), null=True, blank=True)
    secrets_key_id = models.CharField(verbose_name=_("data key id"), max_length=16, blank=True, default="")
    updated_at = models.DateTimeField(verbose_name=_("updated at"), auto_now=True)

    def __str__(self) -> str:
        return self.name

    class Meta:
        verbose_name = _("gateway account")
        verbose_name_plural = _("gateway accounts")


class Payment(models.Model):
    """A gateway trade applied to an order. `(gateway, trade_no)` is unique: a trade is applied
    at most once, whatever the number of notifications (invariant 3)."""

    order = models.ForeignKey("orders.Order", verbose_name=_("order"), on_delete=models.PROTECT,
                              related_name="payments")
    gateway = models.CharField(verbose_name=_("gateway"), max_length=32)
    trade_no = models.CharField(verbose_name=_("trade number"), max_length=128)
    amount = models.DecimalField(verbose_name=_("amount"), max_digits=14, decimal_places=2)
    currency = models.CharField(verbose_name=_("currency"), max_length=5)
    created_at = models.DateTimeField(verbose_name=_("created at"))

    class Meta:
        verbose_name = _("payment")
        verbose_name_plural = _("payments")
        constraints = [models.UniqueConstraint(fields=["gateway", "trade_no"], name="payment_trade_once")]


class Notification(models.Model):
    """Every notification as received (secrets redacted), stored before it is processed and
    kept whatever the outcome — except that an unverified body is cut at 64 KiB, a flooding
    sender's forgeries are not stored, and rejected rows are pruned after
    KAMI_NOTIFY_REJECTED_KEEP_DAYS (fulfilment.notify, payments.services.notifications_prune)."""

    class Result(models.TextChoices):
        RECEIVED = "received", _("Received")
        REJECTED = "rejected", _("Rejected")  # failed verification
        FULFILLED = "fulfilled", _("Fulfilled")
        AWAITING_STOCK = "awaiting_stock", _("Awaiting stock")
        AWAITING_MANUAL = "awaiting_manual", _("Awaiting manual delivery")  # a `manual` product: paid, staff deliver it
        DUPLICATE = "duplicate", _("Duplicate")
        FLAGGED = "flagged", _("Flagged")
        UNKNOWN_ORDER = "unknown_order", _("Unknown order")
        IGNORED = "ignored", _("Ignored")  # verified, but not a "paid" event
        ERROR = "error", _("Error")  # transient failure; the gateway is asked to retry

    gateway = models.CharField(verbose_name=_("gateway"), max_length=32)
    received_at = models.DateTimeField(verbose_name=_("received at"))
    method = models.CharField(verbose_name=_("HTTP method"), max_length=8)
    remote_addr = models.CharField(verbose_name=_("remote address"), max_length=64, blank=True, default="")
    headers = models.JSONField(verbose_name=_("headers"), default=dict, blank=True)
    body = models.TextField(verbose_name=_("body"), blank=True, default="")
    verified = models.BooleanField(verbose_name=_("verified"), default=False)
    order_no = models.CharField(verbose_name=_("order number"), max_length=64, blank=True, default="")
    trade_no = models.CharField(verbose_name=_("trade number"), max_length=128, blank=True, default="")
    result = models.CharField(verbose_name=_("result"), max_length=16, choices=Result.choices, default=Result.RECEIVED)
    error = models.TextField(verbose_name=_("error"), blank=True, default="")
    # Milliseconds from receiving the notification to its result being decided (the confirm and
    # its wait for the group commit included): /metrics' kami_notify_seconds_last_hour. Null for
    # rows written before this column.
    handled_ms = models.PositiveIntegerField(verbose_name=_("handled in (ms)"), null=True, blank=True)

    class Meta:
        verbose_name = _("gateway notification")
        verbose_name_plural = _("gateway notifications")
        indexes = [models.Index(fields=["gateway", "trade_no"], name="notification_trade")]
