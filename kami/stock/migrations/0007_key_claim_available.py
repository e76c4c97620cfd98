"""The claim's plan after ANALYZE (issue 9).

- A partial index of available keys only, by (product, reusable, id). PostgreSQL and SQLite
  build it; MariaDB has no partial indexes and Django skips it there (its claim reads
  `key_claim`). A sale takes the row out of it: no index entry to write.
- PostgreSQL: joint statistics on (product_id, status). Without them the planner multiplies
  "keys of this product" by "available keys of any product", believes a hot product with most
  keys sold still has thousands available spread evenly, and walks the primary key through
  every sold key (measured: the same plan test flipped to `stock_key_pkey` run to run).
"""
from django.db import migrations, models

_STATISTICS = "CREATE STATISTICS IF NOT EXISTS key_product_status (mcv, dependencies) ON product_id, status FROM stock_key"


def statistics_create(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(_STATISTICS)


def statistics_drop(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute("DROP STATISTICS IF EXISTS key_product_status")


class Migration(migrations.Migration):

    dependencies = [
        ('stock', '0006_key_reusable_seal'),
    ]

    operations = [
        migrations.AddIndex(
            model_name='key',
            index=models.Index(condition=models.Q(('status', 'available')), fields=['product', 'reusable', 'id'],
                               name='key_claim_available'),
        ),
        migrations.RunPython(statistics_create, statistics_drop),
    ]
