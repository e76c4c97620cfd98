"""Flags and positional or KEY=VALUE arguments in any order a person types them: every ordering
of a command parses to the same options, and so does a common option (`-v 0`, `--traceback`)
given after the action word."""
from __future__ import annotations

import io

import pytest
from django.core.management import call_command, load_command_class

from kami.payments.models import GatewayAccount
from kami.payments.registry import secrets_decrypt

pytestmark = pytest.mark.sqlite_only  # argument parsing: the same on every engine

README_EPAY = ["epay", "--enable", "pid=1001", "key=abc", "url=https://pay.example/"]

ORDERINGS = {
    "gateway": [
        ["set", *README_EPAY],
        ["set", "--enable", "epay", "pid=1001", "key=abc", "url=https://pay.example/"],
        ["set", "epay", "pid=1001", "key=abc", "url=https://pay.example/", "--enable"],
        ["set", "epay", "pid=1001", "--enable", "key=abc", "url=https://pay.example/"],
    ],
    "product": [
        ["add", "netflix-1m", "--name", "Netflix 1 month", "--price", "29.90", "--low-stock", "20"],
        ["add", "--name", "Netflix 1 month", "--price", "29.90", "--low-stock", "20", "netflix-1m"],
        ["add", "--name", "Netflix 1 month", "netflix-1m", "--low-stock", "20", "--price", "29.90"],
    ],
    "keys": [
        ["-v", "0", "import", "netflix-1m", "codes.txt"],
        ["import", "-v", "0", "netflix-1m", "codes.txt"],
        ["import", "netflix-1m", "-v", "0", "codes.txt"],
        ["import", "netflix-1m", "codes.txt", "-v", "0"],
    ],
    "keys generate": [
        ["generate", "netflix-1m", "--count", "5", "--pattern", "XXXX-XXXX-XXXX-XXXX-XXXX"],
        ["generate", "--count", "5", "netflix-1m", "--pattern", "XXXX-XXXX-XXXX-XXXX-XXXX"],
        ["generate", "--pattern", "XXXX-XXXX-XXXX-XXXX-XXXX", "--count", "5", "netflix-1m"],
    ],
    "keys void": [
        ["void", "netflix-1m", "a1b2c3", "--reason", "leaked"],
        ["void", "--reason", "leaked", "netflix-1m", "a1b2c3"],
        ["void", "netflix-1m", "--reason", "leaked", "a1b2c3"],
    ],
    "keys export": [
        ["export", "netflix-1m", "--status", "sold", "--format", "csv"],
        ["export", "--format", "csv", "netflix-1m", "--status", "sold"],
    ],
    "staff": [
        ["add", "alice", "--role", "owner", "--email", "a@shop.example", "--password-stdin"],
        ["add", "--role", "owner", "alice", "--password-stdin", "--email", "a@shop.example"],
        ["add", "--password-stdin", "--email", "a@shop.example", "--role", "owner", "alice"],
    ],
    "staff role": [
        ["role", "bob", "operator", "--traceback"],
        ["--traceback", "role", "bob", "operator"],
        ["role", "bob", "--traceback", "operator"],
    ],
    "order": [
        ["refund", "K20261204ABCD", "--reason", "never arrived"],
        ["refund", "--reason", "never arrived", "K20261204ABCD"],
    ],
    "shop": [
        ["--verbosity", "2", "set", "name=My shop", "footer=Open 9-18"],
        ["set", "name=My shop", "--verbosity", "2", "footer=Open 9-18"],
        ["set", "name=My shop", "footer=Open 9-18", "--verbosity", "2"],
    ],
    "reconcile": [
        ["--limit", "20", "-v", "0"],
        ["-v", "0", "--limit", "20"],
    ],
}


def parsed(command: str, args: list[str]) -> dict:
    parser = load_command_class("kami.cli", command).create_parser("kami", command)
    return vars(parser.parse_args(args))


@pytest.mark.parametrize("case", sorted(ORDERINGS))
def test_every_ordering_parses_alike(case):
    command = case.split()[0]
    orderings = ORDERINGS[case]
    first = parsed(command, orderings[0])
    for args in orderings[1:]:
        assert parsed(command, args) == first, args


def test_an_option_after_the_action_word_does_not_hide_its_default():
    # given no -v at all: the default verbosity survives the sub-parser
    assert parsed("keys", ["import", "netflix-1m", "codes.txt"])["verbosity"] == 1
    assert parsed("gateway", ["set", "epay", "pid=1"])["values"] == ["pid=1"]
    assert parsed("gateway", ["set", "epay", "--disable"])["values"] == []


@pytest.mark.django_db(transaction=True)
def test_the_readme_gateway_command_configures_the_gateway():
    # when the merchant types the README's command as it stands
    out = io.StringIO()
    call_command("gateway", "set", *README_EPAY, stdout=out, stderr=io.StringIO())
    # then
    account = GatewayAccount.objects.get(name="epay")
    assert account.enabled and account.config == {"pid": "1001", "url": "https://pay.example/"}
    assert secrets_decrypt(account) == {"key": "abc"}
    assert "epay: enabled" in out.getvalue()


def test_a_missing_positional_is_still_named():
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match=r"required: name$"):
        parsed("gateway", ["set", "--enable"])
    with pytest.raises(CommandError, match="unrecognized arguments: --bogus"):
        parsed("gateway", ["set", "epay", "--bogus"])
