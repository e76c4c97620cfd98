"""`kami deliveries retry --all` / `kami deliveries retry ID …`: the delivery queue's "retry now"
from the shell, once the cause is fixed (the mail server is back). The same services as the back
office's queue (kami.delivery.services), audited as the `cli` actor; `kami worker` (or the one
`kami serve` starts) then sends them, oldest first."""
from __future__ import annotations

from django.core.management.base import CommandError

from kami.cli.base import KamiCommand
from kami.delivery.models import OutboxMessage
from kami.delivery.services import deliveries_retry_all, delivery_retry_now


class Command(KamiCommand):
    help = "Retry deliveries now (after a mail outage): every manual one with --all, or the given ids."

    def add_arguments(self, parser):
        actions = parser.add_subparsers(dest="action", required=True)
        retry = actions.add_parser("retry", help="make deliveries due now; the worker sends them in queue order")
        retry.add_argument("ids", nargs="*", type=int, help="delivery ids (the back office's delivery queue shows them)")
        retry.add_argument("--all", action="store_true", dest="every",
                           help="every delivery in the manual queue (out of attempts)")
        retry.add_argument("--failed", action="store_true",
                           help="with --all: the failed ones waiting for their next attempt instead")

    def handle(self, *args, action, ids, every, failed, **options):
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
