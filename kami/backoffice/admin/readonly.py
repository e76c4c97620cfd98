"""Pages that show records nobody edits from the UI (audit log, keys, orders): changes go through
services and their actions, never through a change form. Their date drill-down stays off on a
MariaDB without time-zone tables (it would fail there)."""
from __future__ import annotations

from functools import cache

from django.conf import settings
from django.contrib import admin
from django.contrib.admin.views.main import ChangeList
from django.db import connection

DATE_HIERARCHY_ARG = 5  # position of `date_hierarchy` in ChangeList's arguments


@cache
def _dates_by_zone() -> bool:
    """Whether the database can group datetimes by day in the shop's time zone. MySQL/MariaDB can
    only once its time zone tables are loaded (mysql_tzinfo_to_sql); without them Django's date
    drill-down fails, so the list keeps the date filter alone."""
    if connection.vendor != "mysql" or not settings.USE_TZ:
        return True
    with connection.cursor() as cursor:
        cursor.execute("SELECT CONVERT_TZ('2000-01-01 00:00:00', 'UTC', %s)", [settings.TIME_ZONE])
        return cursor.fetchone()[0] is not None


class ZoneSafeChangeList(ChangeList):
    """Drops the date drill-down where the database cannot group by day in the shop's zone."""

    def __init__(self, *args, **kwargs):
        if not _dates_by_zone():
            args = list(args)
            args[DATE_HIERARCHY_ARG] = None
        super().__init__(*args, **kwargs)


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def get_changelist(self, request, **kwargs):
        return ZoneSafeChangeList
