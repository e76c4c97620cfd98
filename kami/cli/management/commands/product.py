"""`kami product add SLUG …`, `kami product list` and `kami product set SLUG picture=@file.png`.

`set` takes KEY=VALUE like `kami shop set`: `picture=@path` gives the product a picture (checked,
drawn again at two sizes, see catalog.pictures), `picture=` with nothing removes it. A `dynamic`
product takes `mint_url=https://…` (its signing secret is made and printed once, the first time)
and `mint_secret=new` (a new secret, printed once): kami/fulfilment/mint."""
from __future__ import annotations

from pathlib import Path

from rich.table import Table

from kami.catalog.models import Product
from kami.catalog.pictures import PICTURE_MAX_BYTES, product_picture_remove, product_picture_set
from kami.catalog.selectors import product_get
from kami.catalog.services import product_create
from kami.cli.base import KamiCommand
from kami.cli.progress import console_for
from kami.core import money
from kami.core.errors import BadInput
from kami.fulfilment.mint.config import product_mint_secret_new, product_mint_set
from kami.stock.selectors import stock_summary


class Command(KamiCommand):
    help = "Add, list and change products: `kami product set SLUG picture=@photo.jpg`."

    def add_arguments(self, parser):
        actions = parser.add_subparsers(dest="action", required=True, metavar="{add,list,set}")
        add = actions.add_parser("add", help="add a product")
        add.add_argument("slug", metavar="SLUG", help="short name used in URLs and commands, e.g. steam-50")
        add.add_argument("--name", required=True, help="what buyers see")
        add.add_argument("--price", required=True, help="unit price as a decimal, e.g. 29.90")
        add.add_argument("--currency", default="CNY")
        add.add_argument("--kind", default="unique", choices=Product.Kind.values,
                         help="unique: each key sold once · reusable: the same key(s) for every buyer · "
                              "manual: a person delivers each order · dynamic: the merchant's system mints the keys "
                              "of each order")
        add.add_argument("--min-qty", type=int, default=1)
        add.add_argument("--max-qty", type=int, default=10)
        add.add_argument("--low-stock", type=int, default=0, help="alert when available keys fall below this")
        add.add_argument("--description", default="")
        actions.add_parser("list", help="list products with their available stock")
        put = actions.add_parser("set", help="change a product: picture=@file.png, or picture= to remove it; "
                                             "mint_url=https://… or mint_secret=new (dynamic products)")
        put.add_argument("slug", metavar="SLUG")
        put.add_argument("values", nargs="+", metavar="KEY=VALUE",
                         help="picture=@path (PNG, JPEG, GIF or WebP); picture= removes the picture; "
                              "mint_url=URL, mint_secret=new")

    def handle(self, *args, action: str, **options):
        if action == "add":
            self._add(**options)
        elif action == "set":
            self._set(slug=options["slug"], values=options["values"])
        else:
            self._list()

    def _set(self, *, slug: str, values: list[str]) -> None:
        product = product_get(slug=slug)
        if values and values[0].partition("=")[0] in ("mint_url", "mint_secret"):
            self._set_mint(product, values)
            return
        picture = _picture_arg(values)
        if picture is None:
            product_picture_remove(product=product, actor="cli")
            self.stdout.write(f"{product.slug}: picture removed")
            return
        product_picture_set(product=product, source=picture, actor="cli")
        self.stdout.write(f"{product.slug}: picture {product.picture} (shown at /pictures/{product.picture_page})")

    def _set_mint(self, product: Product, values: list[str]) -> None:
        name, _, value = values[0].partition("=")
        if len(values) != 1 or (name == "mint_secret" and value != "new"):
            raise BadInput(f"{' '.join(values)[:60]!r}: write mint_url=https://… (mint_url= clears it) "
                           "or mint_secret=new, one at a time")
        if name == "mint_url":
            done = product_mint_set(product=product, url=value, actor="cli")
            self.stdout.write(f"{product.slug}: mint URL {done.product.mint_url or 'cleared (paid orders will wait)'}")
        else:
            done = product_mint_secret_new(product=product, actor="cli")
        if done.secret:
            self.stdout.write(f"signing secret (shown once; verify requests with it): {done.secret}")

    def _add(self, *, slug, name, price, currency, kind, min_qty, max_qty, low_stock, description, **_):
        product = product_create(
            slug=slug, name=name, price=money.parse_amount(price, field="--price"), currency=currency, kind=kind,
            min_qty=min_qty, max_qty=max_qty, low_stock=max(low_stock, 0), description=description)
        self.stdout.write(f"added {product.slug}: {product.name} · {product.price} {product.currency} · {product.kind}")
        if product.kind == Product.Kind.DYNAMIC:
            self.stdout.write(f"next: kami product set {product.slug} mint_url=https://…   (where its keys are minted)")
            return
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


def _picture_arg(pairs: list[str]) -> bytes | None:
    """The picture's bytes from `picture=@path`, None for `picture=` (remove)."""
    if len(pairs) != 1 or pairs[0].partition("=")[0] != "picture" or "=" not in pairs[0]:
        raise BadInput(f"{' '.join(pairs)[:60]!r}: write picture=@path/to/picture.png (or picture= to remove it)")
    value = pairs[0].partition("=")[2]
    if not value:
        return None
    if not value.startswith("@"):
        raise BadInput("picture: give a picture file as picture=@path/to/picture.png (or picture= to remove it)")
    file = Path(value[1:]).expanduser()
    try:
        if file.stat().st_size > PICTURE_MAX_BYTES:
            raise BadInput(f"picture: {value[1:]} is larger than {PICTURE_MAX_BYTES // (1024 * 1024)} MB; "
                           "use a smaller picture")
        return file.read_bytes()
    except OSError as exc:
        raise BadInput(f"picture: cannot read {value[1:]!r} ({exc.__class__.__name__}); give a readable file") from None
