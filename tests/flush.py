"""The flush after a transactional test, without writing the content types and permissions again.

Django empties every table after a transactional test, then sends post_migrate so that each app
"responds as if the database had been migrated from scratch": contenttypes and auth insert their
~60 content types and ~250 permissions again, which took 0.3–0.8 s per test here (more than the
test itself for most of the ~370 transactional tests, on each of the three engines), while the
DELETEs take 10–40 ms. Those rows are the same after every migrate: here they stay, and
post_migrate is still sent, so every other receiver (the staff roles' groups and permissions,
the gateway settings cache) does what it does after a migrate. Measured in docs/performance.md,
"Test suite".

Rows a test writes to those two tables would stay for the next test: none does (a test that
needed to would have to clean up after itself). Everything else is emptied exactly as before,
with the backend's own flush statements (DELETE on PostgreSQL too: tests/backends/postgresql).
"""
from __future__ import annotations

from django.core.management.color import no_style
from django.core.management.sql import emit_post_migrate_signal
from django.db import connections
from django.test import TransactionTestCase

KEPT = frozenset({"django_content_type", "auth_permission"})


class _WithoutStaticRows:
    """The `apps` post_migrate carries, as a registry without contenttypes and auth models: their
    receivers (create_contenttypes, create_permissions) look their models up in it and, finding
    none, return at once. Kami's receivers read the global registry and run as after a migrate."""

    def get_app_config(self, app_label: str):
        raise LookupError(app_label)

    def get_model(self, app_label: str, model_name: str | None = None, require_ready: bool = True):
        raise LookupError(app_label)


_django_fixture_teardown = TransactionTestCase._fixture_teardown


def _fixture_teardown(self) -> None:
    if self.available_apps is not None or self.serialized_rollback:
        return _django_fixture_teardown(self)  # the subset flushes Django handles itself
    for db_name in self._databases_names(include_mirrors=False):
        connection = connections[db_name]
        tables = [t for t in connection.introspection.django_table_names(only_existing=True, include_views=False)
                  if t not in KEPT]
        connection.ops.execute_sql_flush(connection.ops.sql_flush(no_style(), tables, reset_sequences=False))
        emit_post_migrate_signal(0, False, db_name, apps=_WithoutStaticRows())


def keys_truncate(connection) -> None:
    """Empty the key table in one statement, the rows that point at it being flushed next anyway:
    PostgreSQL truncates them with it (CASCADE); MariaDB and SQLite skip the foreign-key checks,
    which lets SQLite drop the table's pages whole instead of deleting row by row."""
    from kami.stock.models import Key

    table = connection.ops.quote_name(Key._meta.db_table)
    statements = {"postgresql": [f"TRUNCATE {table} CASCADE"],
                  "mysql": ["SET FOREIGN_KEY_CHECKS = 0", f"TRUNCATE {table}", "SET FOREIGN_KEY_CHECKS = 1"],
                  "sqlite": ["PRAGMA foreign_keys = OFF", f"DELETE FROM {table}", "PRAGMA foreign_keys = ON"]}
    with connection.cursor() as cursor:
        for sql in statements[connection.vendor]:
            cursor.execute(sql)


def install() -> None:
    TransactionTestCase._fixture_teardown = _fixture_teardown
