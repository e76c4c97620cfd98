"""Outbound webhooks to the merchant's own systems (docs/api.md, "Webhooks").

An Endpoint is a URL, the events it wants and its signing secret — sealed with the data key
(kami.core.crypto), since it must be usable to sign, and shown once when made or rotated. During
a rotation the previous secret keeps signing too, until `previous_until`.

A WebhookMessage is one event for one endpoint: its Standard Webhooks id (`webhook-id`, the same
on every retry) and the outbox row that carries it. Each HTTP try is a WebhookAttempt: status,
time, an excerpt of the answer.
"""
from __future__ import annotations

from django.db import models
from django.utils.translation import gettext_lazy as _

EVENTS = ("order.paid", "order.fulfilled", "order.awaiting_stock", "order.refunded", "order.flagged", "stock.low",
          "delivery.failed")


class Endpoint(models.Model):
    url = models.URLField(verbose_name=_("URL"), max_length=500)
    description = models.CharField(verbose_name=_("description"), max_length=200, blank=True, default="")
    events = models.JSONField(verbose_name=_("events"), default=list)
    secret_key_id = models.CharField(verbose_name=_("data key id"), max_length=16)
    secret_ciphertext = models.BinaryField(verbose_name=_("encrypted secret"))
    previous_key_id = models.CharField(verbose_name=_("previous secret's data key id"), max_length=16, blank=True,
                                       default="")
    previous_ciphertext = models.BinaryField(verbose_name=_("encrypted previous secret"), null=True, blank=True)
    previous_until = models.DateTimeField(verbose_name=_("previous secret valid until"), null=True, blank=True)
    # Opt-in: order.fulfilled bodies carry the keys' text. Off, they carry only counts and ids.
    include_keys = models.BooleanField(verbose_name=_("include key text"), default=False)
    enabled = models.BooleanField(verbose_name=_("enabled"), default=True)
    disabled_reason = models.CharField(verbose_name=_("why disabled"), max_length=300, blank=True, default="")
    disabled_at = models.DateTimeField(verbose_name=_("disabled at"), null=True, blank=True)
    created_at = models.DateTimeField(verbose_name=_("created at"))
    updated_at = models.DateTimeField(verbose_name=_("updated at"))

    class Meta:
        verbose_name = _("webhook endpoint")
        verbose_name_plural = _("webhook endpoints")

    def __str__(self) -> str:
        return f"webhook endpoint #{self.pk}"


class WebhookMessage(models.Model):
    msg_id = models.CharField(verbose_name=_("webhook id"), max_length=40, unique=True)
    endpoint = models.ForeignKey(Endpoint, verbose_name=_("endpoint"), on_delete=models.CASCADE,
                                 related_name="messages")
    event = models.CharField(verbose_name=_("event"), max_length=32)
    order_id = models.BigIntegerField(verbose_name=_("order id"), null=True, blank=True)
    outbox = models.OneToOneField("delivery.OutboxMessage", verbose_name=_("delivery"), on_delete=models.CASCADE,
                                  related_name="webhook")
    created_at = models.DateTimeField(verbose_name=_("created at"))

    class Meta:
        verbose_name = _("webhook message")
        verbose_name_plural = _("webhook messages")
        # The ordering check: the earlier messages of one order to one endpoint.
        indexes = [models.Index(fields=["endpoint", "order_id", "id"], name="webhook_order_seq")]

    def __str__(self) -> str:
        return f"{self.event} {self.msg_id}"


class WebhookAttempt(models.Model):
    message = models.ForeignKey(WebhookMessage, verbose_name=_("message"), on_delete=models.CASCADE,
                                related_name="attempts")
    at = models.DateTimeField(verbose_name=_("time"))
    ok = models.BooleanField(verbose_name=_("succeeded"))
    http_status = models.PositiveIntegerField(verbose_name=_("HTTP status"), null=True, blank=True)
    duration_ms = models.PositiveIntegerField(verbose_name=_("duration (ms)"), default=0)
    response_excerpt = models.CharField(verbose_name=_("response excerpt"), max_length=500, blank=True, default="")
    error = models.CharField(verbose_name=_("error"), max_length=300, blank=True, default="")

    class Meta:
        verbose_name = _("webhook attempt")
        verbose_name_plural = _("webhook attempts")
