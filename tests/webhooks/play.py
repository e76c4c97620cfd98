"""Running the delivery worker for the webhook tests, pass by pass, moving the clock a little
between passes (a retry or a deferral waits seconds) while staying inside the receiver's
five-minute timestamp window."""
from __future__ import annotations

from datetime import timedelta

from kami.core import clock
from kami.delivery.models import OutboxMessage
from kami.delivery.worker import run_once

UNDERWAY = ("pending", "sending", "failed")


def webhook_rows():
    return OutboxMessage.objects.filter(kind="webhook_event").order_by("id")


def drain(*, passes: int = 30, step_seconds: int = 2) -> int:
    """Run the worker until no webhook event is underway; returns the passes it took."""
    offset = timedelta(0)
    for n in range(1, passes + 1):
        run_once("test-worker")
        if not webhook_rows().filter(status__in=UNDERWAY).exists():
            return n
        offset += timedelta(seconds=step_seconds)
        clock.travel(offset)
    raise AssertionError(f"webhook events still underway after {passes} passes: "
                         f"{list(webhook_rows().values_list('id', 'status', 'last_error'))}")
