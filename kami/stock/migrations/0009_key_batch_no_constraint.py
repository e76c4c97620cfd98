"""The key's batch without a database constraint: provenance, not money, and its per-row check at
commit was a fifth of the PostgreSQL import's floor (docs/performance.md, "Import"). Django
still sets the keys' batch to NULL when a batch is deleted through it; the index stays."""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('stock', '0008_import_files'),
    ]

    operations = [
        migrations.AlterField(
            model_name='key',
            name='batch',
            field=models.ForeignKey(blank=True, db_constraint=False, null=True,
                                    on_delete=django.db.models.deletion.SET_NULL, related_name='keys',
                                    to='stock.importbatch', verbose_name='batch'),
        ),
    ]
