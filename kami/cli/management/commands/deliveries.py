"""`kami deliveries retry --all` / `kami deliveries retry ID …`: the delivery queue's "retry now"
from the shell, once the cause is fixed (the mail server is back). The same services as the back
office's queue (kami.delivery.services), audited as the `cli` actor; `kami worker` (or the one
`kami serve` starts) then sends them, oldest first.

`kami deliveries prune [--days N] [--dry-run]`: delete old sent deliveries now
(kami.delivery.housekeeping, which every worker also runs hourly)."""
from __future__ import annotations

from django.conf import settings
from django.core.management.base import CommandError

from kami.cli.base import KamiCommand
from kami.core.errors import BadInput
from kami.delivery.housekeeping import outbox_prune
from kami.delivery.models import OutboxMessage
from kami.delivery.services import deliveries_retry_all, delivery_retry_now


class Command(KamiCommand):
    help = ("Retry deliveries now (after a mail outage): every manual one with --all, or the given ids; "
            "or prune old sent deliveries.")

    def add_arguments(self, parser):
        actions = parser.add_subparsers(dest="action", required=True)
        retry = actions.add_parser("retry", help="make deliveries due now; the worker sends them in queue order")
        retry.add_argument("ids", nargs="*", type=int, help="delivery ids (the back office's delivery queue shows them)")
        retry.add_argument("--all", action="store_true", dest="every",
                           help="every delivery in the manual queue (out of attempts)")
        retry.add_argument("--failed", action="store_true",
                           help="with --all: the failed ones waiting for their next attempt instead")
        prune = actions.add_parser("prune", help="delete sent deliveries older than KAMI_OUTBOX_KEEP_DAYS "
                                                 "(workers do it hourly); never failed, manual or handled ones")
        prune.add_argument("--days", type=int, default=None,
                           help="keep this many days instead of KAMI_OUTBOX_KEEP_DAYS (default 30)")
        prune.add_argument("--batch", type=int, default=None, help="rows per transaction (default 500)")
        prune.add_argument("--dry-run", action="store_true", help="count what would be deleted; delete nothing")

    def handle(self, *args, action, **options):
        if action == "prune":
            self._prune(days=options["days"], batch=options["batch"], dry_run=options["dry_run"])
            return
        self._retry(ids=options["ids"], every=options["every"], failed=options["failed"])

    def _prune(self, *, days, batch, dry_run) -> None:
        if days is None and not settings.KAMI_OUTBOX_KEEP_DAYS:
            raise CommandError("KAMI_OUTBOX_KEEP_DAYS=0 keeps every delivery: say how many days to keep with --days",
                               returncode=2)
        try:
            report = outbox_prune(keep_days=days, batch=batch, dry_run=dry_run)
        except BadInput as exc:
            raise CommandError(str(exc), returncode=2) from None
        verb = "would delete" if dry_run else "deleted"
        self.stdout.write(f"{verb} {report.deliveries} sent deliveries (and {report.attempts} attempt records) sent "
                          f"before {report.cutoff:%Y-%m-%d %H:%M} UTC, in {report.batches} batches; "
                          "pending, failed, manual and handled deliveries are kept")

    def _retry(self, *, ids, every, failed) -> None:
        if every == bool(ids) or (failed and not every):
            raise CommandError("say which deliveries: `kami deliveries retry --all` (the manual queue), "
                               "`--all --failed` (those waiting to retry), or their ids", returncode=2)
        if every:
            status = OutboxMessage.Status.FAILED if failed else OutboxMessage.Status.MANUAL
            count = deliveries_retry_all(actor="cli", status=status)
            self.stdout.write(f"{count} {status} deliveries are due now; a running worker sends them in queue order")
            return
        for message_id in ids:
            delivery_retry_now(message_id=message_id, actor="cli")
        self.stdout.write(f"{len(ids)} deliveries are due now: {', '.join(f'#{i}' for i in ids)}")
