"""The audit log, read-only: nobody, owner included, edits or deletes history from the UI."""
from __future__ import annotations

from django.contrib import admin

from kami.audit.models import AuditLog
from kami.backoffice.admin.readonly import ReadOnlyAdmin
from kami.backoffice.site import site


@admin.register(AuditLog, site=site)
class AuditLogAdmin(ReadOnlyAdmin):
    list_display = ("at", "actor", "action", "object_type", "object_id", "ip")
    list_filter = ("action", "object_type", ("at", admin.DateFieldListFilter))
    search_fields = ("actor", "action", "object_id", "ip")
    date_hierarchy = "at"
    readonly_fields = ("at", "actor", "action", "object_type", "object_id", "ip", "detail")
    list_per_page = 100

