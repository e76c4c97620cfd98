"""`kami backup FILE`: the database and the data key in one passphrase-encrypted file."""
from __future__ import annotations

from kami.cli.base import KamiCommand
from kami.cli.passphrase import passphrase_read
from kami.ops.backup import backup_write


class Command(KamiCommand):
    help = ("Write one encrypted backup file: a consistent database dump, the data key and the data dir's secrets. "
            "The passphrase comes from a prompt or --passphrase-file.")

    def add_arguments(self, parser):
        parser.add_argument("file", help="where to write the backup (e.g. /var/backups/kami/kami-$(date +%%F).kamibak)")
        parser.add_argument("--passphrase-file", help="read the passphrase from this file's first line (for cron and timers)")

    def handle(self, *args, file, passphrase_file, **options):
        passphrase = passphrase_read(passphrase_file, confirm=True)
        done = backup_write(path=file, passphrase=passphrase)
        self.stdout.write(f"backed up {done.tables} tables ({done.engine}) and the data key to {done.path} "
                          f"({done.size:,} bytes, encrypted). Keep the passphrase apart from the file: without it "
                          "the backup does not open.")
