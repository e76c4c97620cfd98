"""What every Kami command shares: our errors become clear messages and exit status 2."""
from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from kami.core.errors import BadInput, Conflict, KamiError, NotFound


class KamiCommand(BaseCommand):
    def execute(self, *args, **options):
        try:
            return super().execute(*args, **options)
        except (BadInput, NotFound, Conflict) as exc:
            raise CommandError(str(exc), returncode=2) from None
        except KamiError as exc:
            raise CommandError(str(exc), returncode=1) from None
