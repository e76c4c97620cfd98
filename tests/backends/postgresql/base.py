"""PostgreSQL for the test run only: Django's own backend, except that emptying the tables after
a transactional test uses DELETE instead of TRUNCATE.

TRUNCATE makes new files for every table (≈ 0.5 s for Kami's ~50 tables on this machine) and
runs after each of several hundred transactional tests; the tables hold a few rows by then, and
DELETE empties them in milliseconds. Django's foreign keys on PostgreSQL are DEFERRABLE INITIALLY
DEFERRED and the flush runs in one transaction, so the order of the DELETEs does not matter.
MariaDB's backend already deletes instead of truncating when no sequence is reset."""
from django.db.backends.postgresql import base
from django.db.backends.postgresql.operations import DatabaseOperations as _Operations


class DatabaseOperations(_Operations):
    def sql_flush(self, style, tables, *, reset_sequences=False, allow_cascade=False):
        if reset_sequences or allow_cascade or not tables:
            return super().sql_flush(style, tables, reset_sequences=reset_sequences, allow_cascade=allow_cascade)
        return [f"DELETE FROM {self.quote_name(table)};" for table in tables]


class DatabaseWrapper(base.DatabaseWrapper):
    ops_class = DatabaseOperations
