"""One place that says what time it is, so tests can move it."""
from __future__ import annotations

from datetime import datetime

from django.utils import timezone

_offset = None


def now() -> datetime:
    current = timezone.now()
    return current + _offset if _offset is not None else current


def travel(delta) -> None:
    """Shift the clock (tests only). `travel(None)` returns to real time."""
    global _offset
    _offset = delta
