"""Issue 14, "Keys minted on demand": the `dynamic` kind, and where such a product mints its keys
(a URL, and the signing secret sealed with the data key). See kami/fulfilment/mint."""

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('catalog', '0008_picture_files'),
    ]

    operations = [
        migrations.AddField(
            model_name='product',
            name='mint_secret_ciphertext',
            field=models.BinaryField(blank=True, null=True, verbose_name='encrypted mint secret'),
        ),
        migrations.AddField(
            model_name='product',
            name='mint_secret_key_id',
            field=models.CharField(blank=True, default='', editable=False, max_length=16, verbose_name="mint secret's data key id"),
        ),
        migrations.AddField(
            model_name='product',
            name='mint_url',
            field=models.URLField(blank=True, default='', editable=False, max_length=500, verbose_name='mint URL'),
        ),
        migrations.AlterField(
            model_name='product',
            name='kind',
            field=models.CharField(choices=[('unique', 'unique — each key sold once'), ('reusable', 'reusable — the same key(s) for every buyer'), ('manual', 'manual — a person delivers each order (top-ups, services)'), ('dynamic', "dynamic — the merchant's system mints the keys for each order")], default='unique', max_length=10, verbose_name='kind'),
        ),
    ]
