"""`kami gateway set NAME [--enable|--disable] [KEY=VALUE ...]`, `kami gateway list` and
`kami gateway check NAME`. A value written `@path` is read from that file (PEM keys).

Secrets (the names a gateway lists as secrets, e.g. Epay's `key`) are stored encrypted and
never printed back: `list` says only whether each one is set.
"""
from __future__ import annotations

import re
import shutil
from pathlib import Path
from urllib.parse import urlsplit

from rich.console import Console
from rich.table import Table

from kami.cli.base import KamiCommand
from kami.core.errors import BadInput
from kami.payments.models import GatewayAccount
from kami.payments.registry import GATEWAYS, gateway_class
from kami.payments.selectors import GatewayOverview, gateways_overview, notify_url
from kami.payments.services import gateway_check, gateway_configure

_NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,63}$")


class Command(KamiCommand):
    help = "Set up, enable and check payment gateways: `kami gateway list`, `kami gateway set epay --enable pid=1001 key=… url=https://pay.example/`."

    def add_arguments(self, parser):
        actions = parser.add_subparsers(dest="action", required=True, metavar="{set,list,check}")
        put = actions.add_parser("set", help="change a gateway's settings, enable or disable it")
        put.add_argument("name", help=f"the gateway: {', '.join(sorted(GATEWAYS))}")
        put.add_argument("values", nargs="*", metavar="KEY=VALUE", help="settings to store (secrets are encrypted)")
        switch = put.add_mutually_exclusive_group()
        switch.add_argument("--enable", dest="enable", action="store_const", const=True, default=None)
        switch.add_argument("--disable", dest="enable", action="store_const", const=False)
        actions.add_parser("list", help="every gateway, its settings (never secret values) and its notify URL")
        check = actions.add_parser("check", help="validate a gateway's stored settings offline; print the URLs to paste")
        check.add_argument("name")

    def handle(self, *args, action, **options):
        if action == "set":
            self._set(options["name"], options["values"], options["enable"])
        elif action == "check":
            self._check(options["name"])
        else:
            self._list()

    def _check(self, name: str) -> None:
        problems = gateway_check(name=name)
        account = GatewayAccount.objects.filter(name=name).first()
        for problem in problems:
            self.stderr.write(f"{name}: {problem}")
        self.stdout.write(f"{name}: notify URL: {notify_url(name)}")
        self.stdout.write(f"{name}: return URL: the buyer's order page, {notify_url(name).rsplit('/pay/', 1)[0]}/orders/<order no>/return")
        if problems:
            raise BadInput(f"{name}: {len(problems)} problem(s) in the settings")
        self.stdout.write(f"{name}: settings look right{'' if account and account.enabled else ' (not enabled yet: --enable)'}")

    def _set(self, name: str, pairs: list[str], enable: bool | None) -> None:
        cls = gateway_class(name)  # unknown gateway: NotFound, exit 2, lists the known ones
        values = parse_pairs(pairs)
        if not values and enable is None:
            raise BadInput(f"nothing to change: give KEY=VALUE settings and/or --enable/--disable (kami gateway set {name} --enable)")
        account = gateway_configure(name=name, values=values, enable=enable, actor="cli")
        for key in sorted(values):
            shown = "(secret, stored encrypted)" if key in cls.secret_names() else repr(account.config.get(key, values[key]))
            self.stdout.write(f"{name}: {key} = {shown}")
        self.stdout.write(f"{name}: {'enabled' if account.enabled else 'disabled'}")
        for warning in _warnings(account.config):
            self.stderr.write(f"{name}: warning: {warning}")
        if account.enabled:
            self.stdout.write(f"{name}: notify URL to paste into the gateway: {notify_url(name)}")

    def _list(self) -> None:
        table = Table(title="Payment gateways")
        for column in ("gateway", "enabled", "settings", "secrets", "notify URL"):
            table.add_column(column, overflow="fold")
        for g in gateways_overview():
            table.add_row(g.name, _enabled_text(g), _settings_text(g), _secrets_text(g), g.notify_url)
        Console(file=self.stdout, width=max(shutil.get_terminal_size().columns, 140)).print(table)


def _enabled_text(g: GatewayOverview) -> str:
    # the registry's rule: a sandbox row says enabled, production says no
    return "yes" if g.live else "no (sandbox off here)" if g.enabled else "no"


def _settings_text(g: GatewayOverview) -> str:
    text = "\n".join(f"{k}={v}" for k, v in sorted(g.config.items())) or "—"
    return text + (f"\nmissing: {', '.join(g.missing)}" if g.missing else "")


def _secrets_text(g: GatewayOverview) -> str:
    if g.unreadable:
        return "unreadable (data key missing: restore KAMI_DATA_KEY)"
    return ", ".join(f"{s.name}: {'set' if s.is_set else 'missing'}" for s in g.secrets) or "—"


def parse_pairs(pairs: list[str]) -> dict[str, str]:
    """`KEY=VALUE` arguments as a dict; the value may contain `=` and may be empty (to clear)."""
    values: dict[str, str] = {}
    for position, pair in enumerate(pairs, 1):
        key, sep, value = pair.partition("=")
        if not sep or not _NAME_RE.match(key):
            # Name the argument by position unless it looks like a setting name: a bare word may be a secret.
            which = repr(key) if sep or _NAME_RE.match(key) and len(key) <= 24 else f"setting #{position}"
            raise BadInput(f"{which[:40]}: settings are written KEY=VALUE with a lowercase name, e.g. pid=1001")
        if key in values:
            raise BadInput(f"{key}: given twice; give each setting once")
        values[key] = _read_file(key, value[1:]) if value.startswith("@") else value
    return values


def _read_file(key: str, path: str) -> str:
    try:
        return Path(path).expanduser().read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise BadInput(f"{key}: cannot read {path!r} ({exc.__class__.__name__}); give a readable PEM/text file") from None


def _warnings(config: dict) -> list[str]:
    url = str(config.get("url", ""))
    host = urlsplit(url).hostname or ""
    if url.startswith("http://") and host not in ("localhost", "127.0.0.1", "::1"):
        return [f"url {url} is plain http: the gateway's query API sends the merchant key in the URL; use https"]
    return []
