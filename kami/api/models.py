"""Merchant API tokens and the answers kept for Idempotency-Key (docs/api.md)."""
from __future__ import annotations

from django.db import models
from django.utils.translation import gettext_lazy as _

SCOPES = ("read", "stock", "orders", "refunds", "products", "webhooks")


class ApiToken(models.Model):
    """A bearer token for the merchant API. Only its SHA-256 is stored: the token is shown once,
    when it is made. `prefix` (the first characters) lets a person tell tokens apart."""

    name = models.CharField(verbose_name=_("name"), max_length=64, unique=True)
    prefix = models.CharField(verbose_name=_("prefix"), max_length=16)
    token_hash = models.CharField(verbose_name=_("token hash"), max_length=64, unique=True)
    scopes = models.JSONField(verbose_name=_("scopes"), default=list)
    created_at = models.DateTimeField(verbose_name=_("created at"))
    created_by = models.CharField(verbose_name=_("created by"), max_length=150, blank=True, default="")
    last_used_at = models.DateTimeField(verbose_name=_("last used"), null=True, blank=True)
    revoked_at = models.DateTimeField(verbose_name=_("revoked at"), null=True, blank=True)

    class Meta:
        verbose_name = _("API token")
        verbose_name_plural = _("API tokens")
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @property
    def actor(self) -> str:
        """Who the audit log says did a write made with this token."""
        return f"api:{self.name}"


class IdempotencyRecord(models.Model):
    """The first answer to a POST carrying an Idempotency-Key: a repeat (same token, same key)
    gets it back and nothing runs again. The unique constraint decides who is first."""

    class State(models.TextChoices):
        RUNNING = "running", _("running")
        DONE = "done", _("done")

    token = models.ForeignKey(ApiToken, verbose_name=_("API token"), on_delete=models.CASCADE,
                              related_name="idempotency_records")
    key = models.CharField(verbose_name=_("idempotency key"), max_length=255)
    # SHA-256 of method, path and body: the same key with another request is refused.
    request_hash = models.CharField(verbose_name=_("request hash"), max_length=64)
    state = models.CharField(verbose_name=_("state"), max_length=8, choices=State.choices, default=State.RUNNING)
    status_code = models.PositiveSmallIntegerField(verbose_name=_("status code"), null=True, blank=True)
    content_type = models.CharField(verbose_name=_("content type"), max_length=64, blank=True, default="")
    body = models.TextField(verbose_name=_("body"), blank=True, default="")
    created_at = models.DateTimeField(verbose_name=_("created at"))

    class Meta:
        verbose_name = _("idempotency record")
        verbose_name_plural = _("idempotency records")
        constraints = [models.UniqueConstraint(fields=["token", "key"], name="idempotency_once_per_token")]
        indexes = [models.Index(fields=["created_at"], name="idempotency_created")]
