"""`kami stock`: available, sold and void keys and awaiting-stock orders per product."""
from __future__ import annotations

from rich.table import Table

from kami.cli.base import KamiCommand
from kami.cli.progress import console_for
from kami.stock.selectors import stock_summary


class Command(KamiCommand):
    help = "Show stock per product: available, sold, void keys and orders awaiting stock."

    def handle(self, *args, **options):
        rows = stock_summary()
        if not rows:
            self.stdout.write("no products yet: kami product add SLUG --name TEXT --price 9.90")
            return
        table = Table("product", "kind", "available", "sold", "void", "awaiting stock", "note")
        for row in rows:
            note = f"low (< {row.product.low_stock:,})" if row.low else ""
            if not row.product.active:
                note = (note + " inactive").strip()
            style = "bold red" if row.low or row.awaiting else None
            table.add_row(row.product.slug, row.product.kind, f"{row.available:,}", f"{row.sold:,}", f"{row.void:,}",
                          f"{row.awaiting:,}", note, style=style)
        console_for(self.stdout).print(table)
        waiting = [r.product.slug for r in rows if r.awaiting]
        if waiting:
            self.stdout.write(f"orders are waiting for keys: kami keys import {waiting[0]} FILE "
                              "fulfils them in payment order")
