"""`kami doctor`: check a deployment, one line per check; exit 1 when one fails."""
from __future__ import annotations

from kami.cli.base import KamiCommand
from kami.ops.doctor import FAIL, doctor_run


class Command(KamiCommand):
    help = ("Check this deployment: settings, database, data key, email, base URL, gateways, worker, disk. "
            "One line per check; exit status 1 when one fails.")

    def add_arguments(self, parser):
        parser.add_argument("--min-free-mb", type=int, default=1024, help="fail when the data dir's disk has less free (default 1024)")
        parser.add_argument("--smtp-timeout", type=float, default=5.0, help="seconds to wait for the SMTP server (default 5)")

    def handle(self, *args, min_free_mb, smtp_timeout, **options):
        checks = doctor_run(min_free_mb=min_free_mb, smtp_timeout=smtp_timeout)
        for check in checks:
            self.stdout.write(check.line())
        failed = [c.name for c in checks if c.status == FAIL]
        if failed:
            self.stderr.write(f"{len(failed)} check(s) failed: {', '.join(failed)}")
            raise SystemExit(1)
