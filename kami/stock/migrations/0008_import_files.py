"""Import files in the database (issue 13, "Several machines"): web and worker need no shared data dir.

The files a shop already has in `<data dir>/imports` move in: every report (downloads keep
working) and the upload of every job not ended yet (its worker reads it from the database
now); a moved upload is deleted from the disk, as its job's end would have done. Run this on
the machine whose data dir holds them (the one that ran `kami serve`).
"""

from pathlib import Path

import django.db.models.deletion
from django.db import migrations, models
from django.utils import timezone

CHUNK = 1024 * 1024


def files_into_database(apps, schema_editor):
    from kami.core.datadir import data_dir

    folder = data_dir() / "imports"
    if not folder.is_dir():
        return
    ImportJob = apps.get_model("stock", "ImportJob")
    for job in ImportJob.objects.all().iterator():
        report = Path(job.report_path) if job.report_path else folder / f"{job.pk}.report.csv"
        job.report_id = _copied(apps, report, sealed=False)
        upload = folder / f"{job.pk}.upload"
        if job.status in ("queued", "running"):
            job.upload_id = _copied(apps, upload, sealed=True)
            if job.upload_id:
                upload.unlink()
        job.save(update_fields=["report", "upload"])


def _copied(apps, path, *, sealed):
    """A new ImportFile holding the file at `path`, a chunk at a time (an upload's sealed with the
    data key, as kami.stock.jobfiles writes it); None when there is no file."""
    from kami.stock.jobfiles import chunk_seal

    if not path.is_file():
        return None
    ImportFile, ImportFileChunk = apps.get_model("stock", "ImportFile"), apps.get_model("stock", "ImportFileChunk")
    file = ImportFile.objects.create(created_at=timezone.now())
    with path.open("rb") as f:
        offset = 0
        while data := f.read(CHUNK):
            key_id, stored = chunk_seal(data, file_id=file.pk, offset=offset) if sealed else ("", data)
            ImportFileChunk.objects.create(file=file, offset=offset, key_id=key_id, data=stored)
            offset += len(data)
    return file.pk


class Migration(migrations.Migration):

    dependencies = [
        ('stock', '0007_key_claim_available'),
    ]

    operations = [
        migrations.CreateModel(
            name='ImportFile',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('created_at', models.DateTimeField(verbose_name='created at')),
            ],
            options={
                'verbose_name': 'import file',
                'verbose_name_plural': 'import files',
            },
        ),
        migrations.AddField(
            model_name='importjob',
            name='report',
            field=models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to='stock.importfile', verbose_name='report'),
        ),
        migrations.AddField(
            model_name='importjob',
            name='upload',
            field=models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to='stock.importfile', verbose_name='upload'),
        ),
        migrations.CreateModel(
            name='ImportFileChunk',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('offset', models.BigIntegerField(verbose_name='offset')),
                ('key_id', models.CharField(blank=True, default='', max_length=16, verbose_name='key id')),
                ('data', models.BinaryField(verbose_name='data')),
                ('file', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='chunks', to='stock.importfile', verbose_name='file')),
            ],
            options={
                'verbose_name': 'import file chunk',
                'verbose_name_plural': 'import file chunks',
                'constraints': [models.UniqueConstraint(fields=('file', 'offset'), name='import_file_chunk_offset')],
            },
        ),
        migrations.RunPython(files_into_database, migrations.RunPython.noop),
        migrations.RemoveField(
            model_name='importjob',
            name='report_path',
        ),
    ]
