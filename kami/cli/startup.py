"""What a long-running Kami process (`kami serve`, `kami worker`) refuses to start without."""
from __future__ import annotations

from django.conf import settings
from django.core.management.base import CommandError


def refuse_unsafe_start() -> None:
    """In production, buyers' emails must leave the machine: without EMAIL_URL they would only
    be written to files in the data dir, and counted as sent."""
    if settings.PRODUCTION and not settings.EMAIL_URL:
        raise CommandError("EMAIL_URL is not set: in production Kami must send email "
                           "(EMAIL_URL=smtp://user:pass@host:587/?tls=True)", returncode=2)
