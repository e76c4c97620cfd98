"""What every Kami command shares: our errors become clear messages and exit status 2 (bad input)
or 1 (anything else, a full disk included), and the arguments may come in any order a person types them."""
from __future__ import annotations

import argparse
import copy

from django.core.management.base import BaseCommand, CommandError, CommandParser, no_translations
from django.db import DatabaseError

from kami.core.errors import BadInput, Conflict, KamiError, NotFound, storage_full


class KamiParser(CommandParser):
    """Flags and positionals in any order: `kami gateway set epay --enable pid=1001` and
    `kami gateway set --enable epay pid=1001` parse alike. Plain argparse gives a `nargs="*"`
    positional only the words before the first flag and calls the rest unrecognized; intermixed
    parsing (argparse's own) reads every positional word wherever it stands. argparse refuses it
    on a parser that holds sub-parsers, so it runs on the leaf parsers (where the positionals
    are), and the parent parses as usual and hands the leaf its words."""

    _intermixing = False

    def parse_known_args(self, args=None, namespace=None):
        # parse_known_intermixed_args calls parse_known_args itself (twice, Python 3.11/3.12): the
        # flag lets those inner calls do the plain parse.
        if self._intermixing or self._subparsers is not None:
            return super().parse_known_args(args, namespace)
        self._intermixing = True
        try:
            return self.parse_known_intermixed_args(args, namespace)
        finally:
            self._intermixing = False


def intermixed(parser: CommandParser, inherited: tuple[argparse.Action, ...] = ()) -> KamiParser:
    """Make `parser` and its sub-parsers KamiParsers. Each sub-parser also learns its parents'
    options (`--verbosity`, `--traceback`, …) so they work after the action word too
    (`kami keys import SLUG FILE -v 0`); unset there, they leave the parent's value alone."""
    parser.__class__ = KamiParser
    taken = set(parser._option_string_actions)
    for action in inherited:
        if not taken.intersection(action.option_strings):
            parser._add_action(action)
    for action in parser._actions:
        if not action.option_strings and action.nargs == argparse.ZERO_OR_MORE:
            action.required = False  # may be empty; the intermixed parse would call it missing
    own = tuple(_quiet_copy(a) for a in parser._actions
                if a.option_strings and not isinstance(a, argparse._HelpAction))
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in set(action.choices.values()):
                intermixed(sub, own)
    return parser


def _quiet_copy(action: argparse.Action) -> argparse.Action:
    """The action as a sub-parser carries it: hidden from its help, no default of its own."""
    action = copy.copy(action)
    action.default, action.help, action.required = argparse.SUPPRESS, argparse.SUPPRESS, False
    return action


class KamiCommand(BaseCommand):
    # Django's system checks (models, admin, URL confs, templates, caches: the code and settings.py,
    # nothing the environment changes) cost ~0.4 s of CPU per command, most of it importing every
    # urls.py; an operational command gains nothing from them. `kami check` runs them, so do
    # tests/cli/test_system_checks.py and `kami serve` before it takes traffic (it sets them back on).
    requires_system_checks: list[str] | str = []

    def create_parser(self, prog_name, subcommand, **kwargs):
        return intermixed(super().create_parser(prog_name, subcommand, **kwargs))

    @no_translations  # services' messages are translated for pages and the back office; the shell reads English
    def execute(self, *args, **options):
        try:
            return super().execute(*args, **options)
        except (BadInput, NotFound, Conflict) as exc:
            raise CommandError(str(exc), returncode=2) from None
        except KamiError as exc:
            raise CommandError(str(exc), returncode=1) from None
        except (DatabaseError, OSError) as exc:
            full = storage_full(exc)  # a full disk: where, and the fix; not a traceback
            if full is None:
                raise
            raise CommandError(str(full), returncode=1) from None
