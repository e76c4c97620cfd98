from __future__ import annotations

from django.db import models
from django.utils.translation import gettext_lazy as _


class OutboxMessage(models.Model):
    """A side effect to perform after commit: a key delivery or an admin alert.

    Written in the same transaction as the state change that causes it; `dedupe_key` is unique,
    so the same cause never queues twice. Payloads hold ids, never plaintext keys: the channel
    reads the keys when it sends.
    """

    class Status(models.TextChoices):
        PENDING = "pending"
        SENDING = "sending"
        SENT = "sent"
        FAILED = "failed"  # an attempt failed; `next_attempt_at` says when it runs again
        MANUAL = "manual"  # out of attempts: a human has been alerted
        HANDLED = "handled"  # closed by a human who dealt with it (kami.delivery.services.delivery_mark_handled)

    kind = models.CharField(max_length=32)  # order_keys | order_refunded | admin_alert
    channel = models.CharField(max_length=32)  # email | telegram | webhook | log
    target = models.CharField(max_length=254)
    payload = models.JSONField(default=dict, blank=True)
    dedupe_key = models.CharField(max_length=191, unique=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField()
    lease_until = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True, default="")
    message_id = models.CharField(max_length=191, blank=True, default="")
    created_at = models.DateTimeField()
    sent_at = models.DateTimeField(null=True, blank=True)
    # Set when a human closes the row (status `handled`): what they did, who, when.
    note = models.TextField(blank=True, default="")
    handled_by = models.CharField(max_length=150, blank=True, default="")
    handled_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = _("delivery")
        verbose_name_plural = _("deliveries")
        indexes = [models.Index(fields=["status", "next_attempt_at"], name="outbox_due")]

    def __str__(self) -> str:
        return f"{self.kind}:{self.channel}#{self.pk}"


class DeliveryAttempt(models.Model):
    message = models.ForeignKey(OutboxMessage, on_delete=models.CASCADE, related_name="attempt_log")
    at = models.DateTimeField()
    ok = models.BooleanField()
    error = models.TextField(blank=True, default="")
    worker = models.CharField(max_length=100, blank=True, default="")

    class Meta:
        verbose_name = _("delivery attempt")
        verbose_name_plural = _("delivery attempts")
