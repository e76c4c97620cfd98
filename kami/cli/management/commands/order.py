"""`kami order refund ORDER_NO [--reason TEXT]`."""
from __future__ import annotations

from kami.cli.base import KamiCommand
from kami.fulfilment.refund import order_refund


class Command(KamiCommand):
    help = "Refund an order through its gateway's refund API (or mark it for a manual refund); its keys are revoked."

    def add_arguments(self, parser):
        actions = parser.add_subparsers(dest="action", required=True)
        refund = actions.add_parser("refund", help="refund a paid order and revoke its keys")
        refund.add_argument("order_no")
        refund.add_argument("--reason", default="", help="shown to the buyer in the refund email")

    def handle(self, *args, action, order_no, reason, **options):
        outcome = order_refund(order_no=order_no, reason=reason, actor="cli")
        how = ("marked refunded — this gateway has no refund API: pay the buyer back by hand"
               if outcome.manual else f"refunded through the gateway (refund {outcome.gateway_ref or 'accepted'})")
        self.stdout.write(f"order {outcome.order_no}: {how}; {outcome.keys_voided} key(s) revoked; the buyer is emailed")
