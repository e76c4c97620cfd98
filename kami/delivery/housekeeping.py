"""Outbox housekeeping: sent deliveries are deleted once older than KAMI_OUTBOX_KEEP_DAYS (30).

Only `sent` rows go, with their attempt log. Pending, sending, failed, manual and handled rows
are never pruned: they are work still to do, or the record of what a person took care of.

Without locking the worker out: the rows are found with a plain read (no lock), walking the
primary key, and deleted in small batches by id (KAMI_OUTBOX_PRUNE_BATCH, 500), each batch its
own short transaction. A worker never touches a `sent` row, so a batch's row locks are never in
its way, and no transaction holds more than one batch. The delete re-checks `status = 'sent'`,
so a row retried by staff in between (it cannot be: sent rows are not retryable) would stay.

Run by every worker once an hour (`kami worker`), and by hand: `kami deliveries prune
[--days N] [--dry-run]`. A pruned row's dedupe key is forgotten with it: the same cause raised
again more than KEEP_DAYS later (an alert for the same event) queues a new row.
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction

from kami.core import clock
from kami.core.errors import BadInput
from kami.delivery.models import DeliveryAttempt, OutboxMessage

log = logging.getLogger("kami.delivery")
S = OutboxMessage.Status
PRUNE_EVERY_SECONDS = 3600  # how often a running worker prunes


@dataclass
class PruneReport:
    cutoff: datetime  # sent before this: pruned
    deliveries: int = 0  # outbox rows deleted (or, with dry_run, that would be)
    attempts: int = 0  # their attempt-log rows
    batches: int = 0
    dry_run: bool = False


def outbox_prune(*, keep_days: int | None = None, batch: int | None = None, dry_run: bool = False,
                 stop: Callable[[], bool] | None = None) -> PruneReport:
    """Delete sent deliveries older than `keep_days` (default KAMI_OUTBOX_KEEP_DAYS) in batches
    of `batch` rows, each its own transaction. dry_run: count what would go, change nothing.
    `stop()` true ends it between batches (a worker shutting down); the next run goes on."""
    keep_days = settings.KAMI_OUTBOX_KEEP_DAYS if keep_days is None else keep_days
    batch = batch or settings.KAMI_OUTBOX_PRUNE_BATCH
    if keep_days < 1 or batch < 1:
        raise BadInput(f"keep {keep_days} days in batches of {batch}: both must be at least 1")
    report = PruneReport(cutoff=clock.now() - timedelta(days=keep_days), dry_run=dry_run)
    last_id = 0
    while True:
        ids = list(OutboxMessage.objects.filter(id__gt=last_id, status=S.SENT, sent_at__lt=report.cutoff)
                   .order_by("id").values_list("id", flat=True)[:batch])  # a plain read: no lock
        if not ids or (stop is not None and stop()):
            break
        last_id = ids[-1]
        report.batches += 1
        if dry_run:
            report.deliveries += len(ids)
            report.attempts += DeliveryAttempt.objects.filter(message_id__in=ids).count()
            continue
        with transaction.atomic():  # one batch: its rows and their attempt log (the cascade), by id
            _, counts = OutboxMessage.objects.filter(id__in=ids, status=S.SENT).delete()
        report.deliveries += counts.get(OutboxMessage._meta.label, 0)
        report.attempts += counts.get(DeliveryAttempt._meta.label, 0)
    if report.deliveries and not dry_run:
        log.info("outbox: pruned %d sent deliveries (and %d attempt rows) sent before %s, in %d batches",
                 report.deliveries, report.attempts, f"{report.cutoff:%Y-%m-%d %H:%M} UTC", report.batches)
    return report


def outbox_prune_enabled() -> bool:
    """KAMI_OUTBOX_KEEP_DAYS=0 keeps every row (the worker never prunes)."""
    return settings.KAMI_OUTBOX_KEEP_DAYS > 0
