"""Product pictures in the database (issue 13, "Several machines"): web and worker machines need no
shared data dir. The pictures a shop already has in `<data dir>/pictures` move in (the files stay
where they are; delete the folder once the shop shows its pictures). Run this on the machine whose
data dir holds them (the one that ran `kami serve`).
"""

import re

from django.db import migrations, models
from django.utils import timezone

NAME = re.compile(r"[0-9]{1,12}-[0-9a-f]{16}-(?:thumb|page)\.(?:webp|png)")  # kami.catalog.pictures.NAME_PATTERN


def pictures_into_database(apps, schema_editor):
    from kami.core.datadir import data_dir

    folder = data_dir() / "pictures"
    if not folder.is_dir():
        return
    PictureFile = apps.get_model("catalog", "PictureFile")
    for path in sorted(folder.iterdir()):
        if NAME.fullmatch(path.name) and path.is_file():
            PictureFile.objects.update_or_create(name=path.name, defaults={
                "data": path.read_bytes(), "created_at": timezone.now()})


class Migration(migrations.Migration):

    dependencies = [
        ('catalog', '0007_product_picture'),
    ]

    operations = [
        migrations.CreateModel(
            name='PictureFile',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('name', models.CharField(max_length=100, unique=True, verbose_name='name')),
                ('data', models.BinaryField(verbose_name='data')),
                ('created_at', models.DateTimeField(verbose_name='created at')),
            ],
            options={
                'verbose_name': 'picture file',
                'verbose_name_plural': 'picture files',
            },
        ),
        migrations.RunPython(pictures_into_database, migrations.RunPython.noop),
    ]
