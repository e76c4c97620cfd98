"""`kami order refund ORDER_NO [--reason TEXT]`, `kami order unflag ORDER_NO`."""
from __future__ import annotations

from kami.cli.base import KamiCommand
from kami.fulfilment.flag import order_unflag
from kami.fulfilment.refund import order_refund


class Command(KamiCommand):
    help = ("Refund an order through its gateway's refund API (or mark it for a manual refund), its keys revoked; "
            "or unflag an order put aside for review (an order held because its coupon ran out is then delivered).")

    def add_arguments(self, parser):
        actions = parser.add_subparsers(dest="action", required=True)
        refund = actions.add_parser("refund", help="refund a paid order and revoke its keys")
        refund.add_argument("order_no")
        refund.add_argument("--reason", default="", help="shown to the buyer in the refund email")
        unflag = actions.add_parser("unflag", help="return a flagged order to the status it had (a held order to "
                                                   "awaiting stock, then delivered from stock)")
        unflag.add_argument("order_no")

    def handle(self, *args, action, order_no, reason="", **options):
        if action == "unflag":
            order = order_unflag(order_no=order_no, actor="cli")
            self.stdout.write(f"order {order.order_no}: {order.status}")
            return
        outcome = order_refund(order_no=order_no, reason=reason, actor="cli")
        how = ("marked refunded — this gateway has no refund API: pay the buyer back by hand"
               if outcome.manual else f"refunded through the gateway (refund {outcome.gateway_ref or 'accepted'})")
        self.stdout.write(f"order {outcome.order_no}: {how}; {outcome.keys_voided} key(s) revoked; the buyer is emailed")
