"""`kami shop show` and `kami shop set name=… notice=… notice_format=markdown footer=… logo=@path`.

A value written `@path` is read from that file (the logo always is: `logo=@logo.png`); `logo=`
with nothing removes the logo, `name=` goes back to KAMI_SHOP_NAME. Every change is audited.
"""
from __future__ import annotations

from pathlib import Path

from kami.cli.base import KamiCommand
from kami.core.errors import BadInput
from kami.core.models import SINGLETON_ID, ShopSettings
from kami.shop.selectors import logo_dir, shop_settings_get
from kami.shop.services import LOGO_MAX_BYTES, shop_settings_update

SETTABLE = ("name", "notice", "notice_format", "footer", "logo")


class Command(KamiCommand):
    help = "Show or change the shop's name, logo, notice banner and footer: `kami shop set name='My shop' logo=@logo.png`."

    def add_arguments(self, parser):
        actions = parser.add_subparsers(dest="action", required=True, metavar="{show,set}")
        actions.add_parser("show", help="the current settings")
        put = actions.add_parser("set", help="change settings (others keep their value)")
        put.add_argument("values", nargs="+", metavar="KEY=VALUE",
                         help=f"{', '.join(SETTABLE)}; VALUE may be @path to read a file; logo= removes the logo")

    def handle(self, *args, action, **options):
        if action == "set":
            shop_settings_update(actor="cli", **_parse(options["values"]))
        self._show()

    def _show(self) -> None:
        shop = shop_settings_get()
        row = ShopSettings.objects.filter(pk=SINGLETON_ID).first()
        default = "" if row and row.name else "  (KAMI_SHOP_NAME; set name=… to change)"
        self.stdout.write(f"name: {shop.name}{default}")
        self.stdout.write(f"logo: {logo_dir() / shop.logo if shop.logo else '—'}")
        self.stdout.write(f"notice ({shop.notice_format}): {shop.notice or '—'}")
        self.stdout.write(f"footer: {shop.footer or '—'}")
        if row and row.updated_at:
            self.stdout.write(f"changed {row.updated_at:%Y-%m-%d %H:%M} by {row.updated_by}")


def _parse(pairs: list[str]) -> dict:
    fields: dict = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or key not in SETTABLE:
            raise BadInput(f"{pair[:40]!r}: write KEY=VALUE with KEY one of {', '.join(SETTABLE)}")
        if key in fields or (key == "logo" and "logo_remove" in fields):
            raise BadInput(f"{key}: given twice; give each setting once")
        if key == "logo":
            if not value:
                fields["logo_remove"] = True
            elif not value.startswith("@"):
                raise BadInput("logo: give a picture file as logo=@path/to/logo.png (or logo= to remove it)")
            else:
                fields["logo"] = _read(key, value[1:], binary=True)
        else:
            fields[key] = _read(key, value[1:], binary=False) if value.startswith("@") else value
    return fields


def _read(key: str, path: str, *, binary: bool) -> str | bytes:
    file = Path(path).expanduser()
    try:
        if binary:
            if file.stat().st_size > LOGO_MAX_BYTES:
                raise BadInput(f"{key}: {path} is larger than {LOGO_MAX_BYTES // 1024} KB; use a smaller picture")
            return file.read_bytes()
        return file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise BadInput(f"{key}: cannot read {path!r} ({exc.__class__.__name__}); give a readable file") from None
