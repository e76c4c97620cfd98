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
        PENDING = "pending", _("Pending")
        SENDING = "sending", _("Sending")
        SENT = "sent", _("Sent")
        FAILED = "failed", _("Failed")  # an attempt failed; `next_attempt_at` says when it runs again
        MANUAL = "manual", _("Manual")  # out of attempts: a human has been alerted
        # Closed by a human who dealt with it (kami.delivery.services.delivery_mark_handled).
        HANDLED = "handled", _("Handled")

    kind = models.CharField(verbose_name=_("kind"), max_length=32)  # order_keys | order_refunded | admin_alert
    channel = models.CharField(verbose_name=_("channel"), max_length=32)  # email | telegram | webhook | log
    target = models.CharField(verbose_name=_("recipient"), max_length=254)
    payload = models.JSONField(verbose_name=_("payload"), default=dict, blank=True)
    dedupe_key = models.CharField(verbose_name=_("deduplication key"), max_length=191, unique=True)
    status = models.CharField(verbose_name=_("status"), max_length=10, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(verbose_name=_("attempts"), default=0)
    next_attempt_at = models.DateTimeField(verbose_name=_("next attempt at"))
    lease_until = models.DateTimeField(verbose_name=_("lease until"), null=True, blank=True)
    # Whose lease it is: the random token of the claim that holds the row (kami/delivery/leases.py).
    lease_token = models.CharField(verbose_name=_("lease owner"), max_length=32, blank=True, default="")
    last_error = models.TextField(verbose_name=_("last error"), blank=True, default="")
    message_id = models.CharField(verbose_name=_("message id"), max_length=191, blank=True, default="")
    created_at = models.DateTimeField(verbose_name=_("created at"))
    sent_at = models.DateTimeField(verbose_name=_("sent at"), null=True, blank=True)
    # Set when a human closes the row (status `handled`): what they did, who, when.
    note = models.TextField(verbose_name=_("note"), blank=True, default="")
    handled_by = models.CharField(verbose_name=_("handled by"), max_length=150, blank=True, default="")
    handled_at = models.DateTimeField(verbose_name=_("handled at"), null=True, blank=True)

    class Meta:
        verbose_name = _("delivery")
        verbose_name_plural = _("deliveries")
        indexes = [models.Index(fields=["status", "next_attempt_at"], name="outbox_due")]

    def __str__(self) -> str:
        return f"{self.kind}:{self.channel}#{self.pk}"


class DeliveryAttempt(models.Model):
    message = models.ForeignKey(OutboxMessage, verbose_name=_("message"), on_delete=models.CASCADE,
                                related_name="attempt_log")
    at = models.DateTimeField(verbose_name=_("time"))
    ok = models.BooleanField(verbose_name=_("succeeded"))
    error = models.TextField(verbose_name=_("error"), blank=True, default="")
    worker = models.CharField(verbose_name=_("worker"), max_length=100, blank=True, default="")

    class Meta:
        verbose_name = _("delivery attempt")
        verbose_name_plural = _("delivery attempts")


class WorkerHeartbeat(models.Model):
    """One row per running `kami worker` (kami/delivery/heartbeats.py): written when it starts,
    its `seen_at` moved forward every KAMI_WORKER_HEARTBEAT_SECONDS from its delivery loop,
    `stopped_at` set when it stops cleanly. `kami doctor` and `/metrics` read it to say whether a
    worker runs. Not used to take rows over from a dead worker: leases do that (leases.py)."""

    name = models.CharField(verbose_name=_("worker"), max_length=100, unique=True)  # the worker id, host:pid by default
    host = models.CharField(verbose_name=_("host"), max_length=255)
    pid = models.PositiveIntegerField(verbose_name=_("process id"))
    version = models.CharField(verbose_name=_("version"), max_length=40, blank=True, default="")
    started_at = models.DateTimeField(verbose_name=_("started at"))
    seen_at = models.DateTimeField(verbose_name=_("last seen at"), db_index=True)
    stopped_at = models.DateTimeField(verbose_name=_("stopped at"), null=True, blank=True)

    class Meta:
        verbose_name = _("worker heartbeat")
        verbose_name_plural = _("worker heartbeats")

    def __str__(self) -> str:
        return self.name
