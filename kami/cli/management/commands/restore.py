"""`kami restore FILE`: a backup from `kami backup` into an empty database and this data dir."""
from __future__ import annotations

from kami.cli.base import KamiCommand
from kami.cli.passphrase import passphrase_read
from kami.ops.backup import backup_restore


class Command(KamiCommand):
    help = ("Restore a `kami backup` file into an empty database (DATABASE_URL) and this data dir. "
            "Refuses a database that already has tables.")

    def add_arguments(self, parser):
        parser.add_argument("file", help="the backup file")
        parser.add_argument("--passphrase-file", help="read the passphrase from this file's first line")

    def handle(self, *args, file, passphrase_file, **options):
        passphrase = passphrase_read(passphrase_file, confirm=False)
        done = backup_restore(path=file, passphrase=passphrase)
        where = "written to the data dir" if done.data_key_written else "already in place"
        first = (f"kami migrate (this Kami is newer than the backup for {', '.join(done.behind)}), then "
                 if done.behind else "")
        self.stdout.write(f"restored the {done.engine} database backed up at {done.created_at}; data key {where}. "
                          f"Next: {first}kami doctor, then start the services.")
