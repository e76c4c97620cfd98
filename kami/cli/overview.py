"""What `kami` and `kami help` print: Kami's own commands, grouped, one line each. Django's and
its apps' commands (axes_reset_ip, changepassword, …) only with `kami help --all`."""
from __future__ import annotations

import re

from django.core.management import get_commands, load_command_class

GROUPS: list[tuple[str, tuple[str, ...]]] = [
    ("Shop", ("serve", "worker", "demo", "migrate")),
    ("Catalogue & stock", ("product", "keys", "stock", "shop")),
    ("Payments", ("gateway", "reconcile", "order")),
    ("Staff", ("staff",)),
    ("Integrations", ("api",)),
    ("Telegram", ("telegram",)),
    ("Operations", ("doctor", "backup", "restore")),
]
# Django's own command that every shop runs; its help text speaks to Django developers.
SUMMARIES = {"migrate": "Create or update the database tables: run it first, and after every upgrade."}


def overview(*, everything: bool = False) -> str:
    commands = get_commands()  # name -> the app that provides it
    ours = {name for name, app in commands.items() if app.startswith("kami.")}
    grouped = {name for _, names in GROUPS for name in names}
    groups = [(title, [n for n in names if n in commands]) for title, names in GROUPS]
    groups.append(("More", sorted(ours - grouped)))  # a new Kami command shows up before it is filed
    lines = ["Kami's commands (`kami help COMMAND` or `kami COMMAND --help` for a command's options):"]
    width = max(len(name) for name in ours | grouped)
    for title, names in groups:
        if names:
            lines += ["", title] + [_line(name, commands[name], width) for name in names]
    others = sorted((app, name) for name, app in commands.items() if name not in ours | grouped)
    if everything:
        for app in sorted({app for app, _ in others}):
            names = [name for a, name in others if a == app]
            lines += ["", f"[{app}]"] + [_line(name, app, max(map(len, names))) for name in names]
    else:
        lines += ["", f"{len(others)} more commands from Django and its apps: kami help --all"]
    return "\n".join(lines) + "\n"


def _line(name: str, app: str, width: int) -> str:
    return f"  {name:<{width}}  {summary(name, app)}"


def summary(name: str, app: str) -> str:
    """The command's help cut to its first sentence, without the example after a colon."""
    text = SUMMARIES.get(name)
    if text is None:
        text = " ".join(str(load_command_class(app, name).help or "").split())
        text = re.split(r"(?<=[.!?])\s", text, maxsplit=1)[0]
        text = re.split(r":\s+`", text, maxsplit=1)[0]
    return text.rstrip(".")
