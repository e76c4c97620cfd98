"""`kami demo`: a working shop in one command — migrate, demo products with keys, the sandbox
gateway, then serve. The sandbox is live in this process only (KAMI_SANDBOX=1, set here for the
server and its worker): a later plain `kami serve` on the same data dir does not offer it."""
from __future__ import annotations

import os
from decimal import Decimal

from django.conf import settings
from django.core.management import call_command

from kami.catalog.models import Product
from kami.catalog.services import product_create
from kami.cli.base import KamiCommand
from kami.core.errors import BadInput
from kami.fulfilment.backfill import stock_added
from kami.payments.services import gateway_configure
from kami.staff.roles import owners_exist
from kami.staff.setup_link import setup_link_make
from kami.stock.selectors import available_count
from kami.stock.services import keys_generate

DEMO_PRODUCTS = [
    # slug, name, price, kind, description, keys to generate
    ("steam-50", "Steam Wallet 50 CNY", "48.00", "unique", "Redeem in Steam → Games → Redeem a Steam Wallet Code.", 40),
    ("netflix-1m", "Netflix 1 month", "29.90", "unique", "A one-month gift code.", 25),
    ("office-key", "Office Home licence", "99.00", "unique", "One licence key for one PC.", 3),
]


class Command(KamiCommand):
    help = "Set up a demo shop (migrations, demo products and keys, sandbox gateway) and serve it."

    def add_arguments(self, parser):
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8000)
        parser.add_argument("--no-serve", action="store_true", help="set up only; do not start the server")

    def handle(self, *args, host, port, no_serve, **options):
        if settings.PRODUCTION:
            raise BadInput("`kami demo` is for trying Kami out; it refuses to run with KAMI_ENV=production")
        os.environ["KAMI_SANDBOX"] = "1"  # for the worker `kami serve` starts
        settings.KAMI_SANDBOX = True
        call_command("migrate", interactive=False, verbosity=0)
        for slug, name, price, kind, description, count in DEMO_PRODUCTS:
            product = Product.objects.filter(slug=slug).first() or product_create(
                slug=slug, name=name, price=Decimal(price), kind=kind, description=description, low_stock=5, max_qty=5)
            missing = count - available_count(product_id=product.pk)
            if missing > 0:
                keys_generate(product=product, count=missing, actor="demo")
                stock_added(product_id=product.pk)
        gateway_configure(name="sandbox", values={}, enable=True, actor="demo")
        self.stdout.write(self.style.SUCCESS("Demo shop ready: products, keys and the sandbox gateway."))
        if no_serve:
            self.stdout.write("The sandbox is offered only by a server started with it: KAMI_SANDBOX=1 kami serve")
        self.stdout.write(f"Open http://{host}:{port}/ , buy a product, press “Simulate payment”, and the key appears.")
        admin = f"http://{host}:{port}/{settings.KAMI_ADMIN_PATH}/"
        if owners_exist():
            self.stdout.write(f"Back office: {admin}")
        else:
            link = setup_link_make().replace(settings.KAMI_BASE_URL, f"http://{host}:{port}", 1)
            self.stdout.write(f"Back office: {admin} — no account exists yet; create the owner with this "
                              f"one-time link (valid 24 h): {link}")
        if not no_serve:
            call_command("serve", host=host, port=port)
