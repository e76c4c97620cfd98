from __future__ import annotations

from django.db import models
from django.utils.translation import gettext_lazy as _


class AuditLog(models.Model):
    """Who did what to which object: reveals, exports, imports, voids, gateway changes."""

    at = models.DateTimeField(verbose_name=_("time"))
    actor = models.CharField(verbose_name=_("actor"), max_length=150)
    action = models.CharField(verbose_name=_("action"), max_length=64)
    object_type = models.CharField(verbose_name=_("object type"), max_length=64, blank=True, default="")
    object_id = models.CharField(verbose_name=_("object id"), max_length=64, blank=True, default="")
    ip = models.CharField(verbose_name=_("IP address"), max_length=64, blank=True, default="")
    detail = models.JSONField(verbose_name=_("detail"), default=dict, blank=True)

    class Meta:
        verbose_name = _("audit log entry")
        verbose_name_plural = _("audit log")
        ordering = ["-at", "-id"]
