"""MariaDB has no partial indexes, and Django builds `key_claim_available` there without its
condition: a full index on (product_id, reusable, id), which MariaDB's optimizer then picked for
the claim, reading every sold key of the product to find the available ones (7,505 rows for 5
keys after 7,500 sales, where `key_claim (product_id, status, id)` reads 5). It also cost each
imported key one more index entry. Dropped there; PostgreSQL and SQLite keep the partial index.
The model still declares it (Django has no index per engine): a later migration that alters or
removes it must skip MariaDB (tests/stock/test_key_indexes_migration.py checks the index is absent).
"""
from django.db import migrations

INDEX = "key_claim_available"


def drop_on_mariadb(apps, schema_editor):
    if not schema_editor.connection.features.supports_partial_indexes:
        schema_editor.execute(f"DROP INDEX {INDEX} ON stock_key")


def create_on_mariadb(apps, schema_editor):
    if not schema_editor.connection.features.supports_partial_indexes:
        schema_editor.execute(f"CREATE INDEX {INDEX} ON stock_key (product_id, reusable, id)")


class Migration(migrations.Migration):

    atomic = False  # MariaDB's DDL commits on its own; an atomic migration may not run it

    dependencies = [
        ('stock', '0009_key_batch_no_constraint'),
    ]

    operations = [
        migrations.RunPython(drop_on_mariadb, create_on_mariadb),
    ]
