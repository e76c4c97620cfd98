"""`kami` and `kami help`: Kami's commands first, grouped, one line each; Django's and its apps'
commands only with `kami help --all`; a command's own help as before."""
from __future__ import annotations

import re

import pytest
from django.core.management import get_commands

from kami.cli.main import main

pytestmark = pytest.mark.sqlite_only  # help text: the same on every engine

DJANGO_ONES = ("axes_reset_ip", "captcha_create_pool", "changepassword", "createsuperuser", "runserver")
GROUPS = {"Shop": ["serve", "worker", "demo", "migrate"], "Catalogue & stock": ["product", "keys", "stock", "shop"],
          "Payments": ["gateway", "reconcile", "order"], "Staff": ["staff"]}


def run(capsys, *args) -> str:
    try:
        main(list(args))
    except SystemExit as exit_:  # argparse's --help ends with exit 0
        assert exit_.code == 0
    return capsys.readouterr().out


def groups_of(text: str) -> dict[str, list[str]]:
    """{group title: [command, …]} as printed: a title line, then indented `name  description` lines."""
    found: dict[str, list[str]] = {}
    for block in text.split("\n\n")[1:]:
        title, *lines = block.strip("\n").splitlines()
        found[title] = [m.group(1) for m in (re.match(r"  (\S+)\s{2,}\S", line) for line in lines) if m]
    return found


@pytest.mark.parametrize("args", [(), ("help",), ("--help",)])
def test_kami_and_kami_help_list_kamis_commands_grouped_with_a_line_each(capsys, args):
    text = run(capsys, *args)
    groups = groups_of(text)
    assert {title: groups[title] for title in GROUPS} == GROUPS
    assert list(groups)[:4] == list(GROUPS)
    for name in DJANGO_ONES:
        assert not re.search(rf"\b{name}\b", text)
    assert "kami help --all" in text.splitlines()[-1]


def test_every_kami_command_is_listed_even_one_not_filed_in_a_group(capsys):
    listed = {name for names in groups_of(run(capsys)).values() for name in names}
    ours = {name for name, app in get_commands().items() if app.startswith("kami.")}
    assert ours <= listed


def test_help_all_adds_djangos_commands_after_kamis(capsys):
    text = run(capsys, "help", "--all")
    groups = groups_of(text)
    assert list(groups)[:4] == list(GROUPS)
    others = {name for title, names in groups.items() if title.startswith("[") for name in names}
    assert set(DJANGO_ONES) <= others
    assert text.index("  serve ") < text.index("  changepassword ")


@pytest.mark.parametrize("args", [("help", "stock"), ("stock", "--help"), ("help", "gateway"), ("gateway", "set", "--help")])
def test_a_commands_own_help_still_works(capsys, args):
    text = run(capsys, *args)
    assert text.startswith("usage: kami " + " ".join(a for a in args if a not in ("help", "--help")))
