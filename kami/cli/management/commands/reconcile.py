"""`kami reconcile`: ask the gateways about orders still pending (the worker does this every minute)."""
from __future__ import annotations

from kami.cli.base import KamiCommand
from kami.fulfilment.reconcile import reconcile_pending


class Command(KamiCommand):
    help = "Query the gateways about orders still pending after KAMI_RECONCILE_AFTER_MINUTES and confirm the paid ones."

    def add_arguments(self, parser):
        parser.add_argument("--limit", type=int, default=500, help="at most this many orders (oldest first)")

    def handle(self, *args, limit, **options):
        confirmed = reconcile_pending(limit=limit)
        self.stdout.write(f"reconciled: {confirmed} pending order(s) confirmed as paid by their gateway")
