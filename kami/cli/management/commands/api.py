"""`kami api token add|list|revoke`: tokens for the merchant API (docs/api.md).

A token is printed once, when it is made: only its hash is stored, so a lost token is revoked and
replaced, never shown again.
"""
from __future__ import annotations

from rich.console import Console
from rich.table import Table

from kami.api.models import SCOPES
from kami.api.tokens import api_token_create, api_token_revoke, api_tokens_list
from kami.cli.base import KamiCommand

ACTOR = "cli"


class Command(KamiCommand):
    help = "Make, list and revoke merchant API tokens: `kami api token add erp --scopes read,stock`."

    def add_arguments(self, parser):
        groups = parser.add_subparsers(dest="group", required=True, metavar="{token}")
        token = groups.add_parser("token", help="merchant API tokens")
        actions = token.add_subparsers(dest="action", required=True, metavar="{add,list,revoke}")
        add = actions.add_parser("add", help="make a token and print it once")
        add.add_argument("name", metavar="NAME", help="who uses it, e.g. erp or game-server")
        add.add_argument("--scopes", required=True, help=f"comma-separated, from {', '.join(SCOPES)}")
        actions.add_parser("list", help="tokens, their scopes and when each was last used")
        revoke = actions.add_parser("revoke", help="stop a token working, at once and for good")
        revoke.add_argument("name", metavar="NAME")

    def handle(self, *args, group: str, action: str, **options):
        getattr(self, f"_{action}")(**options)

    def _add(self, *, name: str, scopes: str, **_):
        made = api_token_create(name=name, scopes=scopes, actor=ACTOR)
        self.stdout.write(made.secret)
        self.stderr.write(f"token {made.token.name} ({', '.join(made.token.scopes)}): shown this once, only its hash "
                          "is kept. Send it as `Authorization: Bearer <token>`.")

    def _list(self, **_):
        table = Table("name", "prefix", "scopes", "created", "last used", "revoked")
        for t in api_tokens_list():
            table.add_row(t.name, t.prefix + "…", ",".join(t.scopes), f"{t.created_at:%Y-%m-%d %H:%M}",
                          f"{t.last_used_at:%Y-%m-%d %H:%M}" if t.last_used_at else "never",
                          f"{t.revoked_at:%Y-%m-%d %H:%M}" if t.revoked_at else "")
        Console(file=self.stdout, width=120).print(table)

    def _revoke(self, *, name: str, **_):
        token = api_token_revoke(name=name, actor=ACTOR)
        self.stdout.write(f"revoked {name} ({token.prefix}…): requests with it now get 401")
