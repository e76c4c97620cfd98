"""Keys record what they were imported as, and how their ciphertext is sealed (issue 16).

`reusable`: keys already stored take their product's kind today, the best knowledge there is.
`seal`: rows already stored were sealed under the one shared AAD (1); new rows are bound (2).
They still open; `kami keys reseal SLUG` re-seals them bound to their place.
"""
from django.db import migrations, models

SEAL_CHOICES = [(1, 'one AAD for every key (older rows)'), (2, 'bound to its product and fingerprint')]


def keys_of_reusable_products(apps, schema_editor):
    Key = apps.get_model("stock", "Key")
    Key.objects.filter(product__kind="reusable").update(reusable=True)


class Migration(migrations.Migration):

    dependencies = [
        ('catalog', '0006_field_labels'),
        ('stock', '0005_field_labels'),
    ]

    operations = [
        migrations.AddField(
            model_name='key',
            name='reusable',
            field=models.BooleanField(default=False, verbose_name='imported as reusable'),
        ),
        # Existing rows get 1 (shared AAD); then the default becomes 2 for every new row.
        migrations.AddField(
            model_name='key',
            name='seal',
            field=models.PositiveSmallIntegerField(choices=SEAL_CHOICES, default=1, verbose_name='sealing format'),
        ),
        migrations.AlterField(
            model_name='key',
            name='seal',
            field=models.PositiveSmallIntegerField(choices=SEAL_CHOICES, default=2, verbose_name='sealing format'),
        ),
        # Last: PostgreSQL refuses an ALTER TABLE after an UPDATE in the same transaction when
        # trigger events are pending.
        migrations.RunPython(keys_of_reusable_products, migrations.RunPython.noop, elidable=True),
    ]
