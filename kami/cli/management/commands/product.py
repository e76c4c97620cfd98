"""`kami product add SLUG …` and `kami product list`."""
from __future__ import annotations

from rich.table import Table

from kami.catalog.models import Product
from kami.catalog.services import product_create
from kami.cli.base import KamiCommand
from kami.cli.progress import console_for
from kami.core import money
from kami.stock.selectors import stock_summary


class Command(KamiCommand):
    help = "Add and list products."

    def add_arguments(self, parser):
        actions = parser.add_subparsers(dest="action", required=True, metavar="{add,list}")
        add = actions.add_parser("add", help="add a product")
        add.add_argument("slug", metavar="SLUG", help="short name used in URLs and commands, e.g. steam-50")
        add.add_argument("--name", required=True, help="what buyers see")
        add.add_argument("--price", required=True, help="unit price as a decimal, e.g. 29.90")
        add.add_argument("--currency", default="CNY")
        add.add_argument("--kind", default="unique", choices=Product.Kind.values,
                         help="unique: each key sold once · reusable: the same key(s) for every buyer · manual: a person delivers each order")
        add.add_argument("--min-qty", type=int, default=1)
        add.add_argument("--max-qty", type=int, default=10)
        add.add_argument("--low-stock", type=int, default=0, help="alert when available keys fall below this")
        add.add_argument("--description", default="")
        actions.add_parser("list", help="list products with their available stock")

    def handle(self, *args, action: str, **options):
        if action == "add":
            self._add(**options)
        else:
            self._list()

    def _add(self, *, slug, name, price, currency, kind, min_qty, max_qty, low_stock, description, **_):
        product = product_create(
            slug=slug, name=name, price=money.parse_amount(price, field="--price"), currency=currency, kind=kind,
            min_qty=min_qty, max_qty=max_qty, low_stock=max(low_stock, 0), description=description)
        self.stdout.write(f"added {product.slug}: {product.name} · {product.price} {product.currency} · {product.kind}")
        self.stdout.write(f"next: kami keys import {product.slug} FILE   (or: kami keys generate {product.slug} --count N)")

    def _list(self) -> None:
        rows = stock_summary()
        if not rows:
            self.stdout.write("no products yet: kami product add SLUG --name TEXT --price 9.90")
            return
        table = Table("slug", "name", "price", "currency", "kind", "active", "available")
        for row in rows:
            p = row.product
            table.add_row(p.slug, p.name, str(p.price), p.currency, p.kind, "yes" if p.active else "no",
                          f"{row.available:,}")
        console_for(self.stdout).print(table)
