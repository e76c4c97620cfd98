"""`kami keys rotate-data-key`: the thin edge over kami.ops.rotation (the `keys` command hands
this action over; docs/operations.md, "Rotating the data key", says when to run what)."""
from __future__ import annotations

from contextlib import contextmanager

from django.core.management.base import CommandError
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeRemainingColumn

from kami.cli.progress import console_for
from kami.ops.rotation import (BATCH_SIZE, data_key_retire, data_key_rotate, data_key_usage, keyring_checked,
                               keyring_source, keyring_with_new_key)

ACTOR = "cli"


def add_rotate_parser(actions) -> None:
    rotate = actions.add_parser(
        "rotate-data-key", help="add a new data key and re-encrypt every stored key under it, while the shop sells; "
                                "run again to resume; --status, --retire KEY_ID")
    what = rotate.add_mutually_exclusive_group()
    what.add_argument("--resume", action="store_true",
                      help="only move what is still under an older data key; never add a key")
    what.add_argument("--status", action="store_true", help="how many stored rows each data key seals; changes nothing")
    what.add_argument("--retire", metavar="KEY_ID",
                      help="remove an old data key from the keyring; refused while any stored row uses it")
    rotate.add_argument("--print", dest="print_only", action="store_true",
                        help="for KAMI_DATA_KEY: print the new keyring (with a new key, or without the retired one) "
                             "instead of writing the data key file; nothing is re-encrypted")
    rotate.add_argument("--batch-size", type=int, default=BATCH_SIZE,
                        help=f"keys per transaction (default {BATCH_SIZE})")
    rotate.add_argument("--pause", type=float, default=0.0, metavar="SECONDS",
                        help="rest between batches, to leave a busy database to the sales (default 0)")


def rotate_handle(command, *, resume: bool, status: bool, retire: str | None, print_only: bool, batch_size: int,
                  pause: float, **_) -> None:
    if status:
        return _status(command)
    if retire:
        return _retire(command, retire, print_only=print_only)
    if print_only:
        if resume:
            raise CommandError("--print and --resume: --print writes nothing and moves nothing; drop one", returncode=2)
        ring = keyring_with_new_key()
        command.stderr.write(f"a keyring with the new data key {ring.primary_id!r} first; set KAMI_DATA_KEY to it on "
                             "every web and worker machine, restart them, then run `kami keys rotate-data-key --resume`")
        command.stdout.write(ring.text().strip().replace("\n", ","))
        return None
    with _progress(command) as (on_start, on_progress):
        result = data_key_rotate(actor=ACTOR, resume_only=resume, batch_size=batch_size, pause=pause,
                                 on_start=on_start, on_progress=on_progress)
    if result.added:
        command.stdout.write(f"added data key {result.key_id!r} first in {keyring_source()}: back it up now "
                             "(`kami backup`): the keys moved to it open with no other key")
    command.stdout.write(f"re-encrypted {result.keys_moved:,} key(s) and {result.secrets_moved:,} secret(s) under "
                         f"data key {result.key_id!r}")
    if result.keys_left:
        raise CommandError(f"{result.keys_left:,} keys are still under an older data key (held by a long transaction): "
                           "run `kami keys rotate-data-key --resume` again", returncode=1)
    _retirable(command, result.key_id, result.usage)


def _status(command) -> None:
    ring = keyring_checked()
    usage = data_key_usage()
    command.stdout.write(f"keyring: {keyring_source()}")
    for key_id in ring.keys:
        role = "newest, seals new keys" if key_id == ring.primary_id else "older, opens only"
        command.stdout.write(f"  {key_id:<16} {role:<24} {usage.get(key_id, 0):>12,} stored rows")
    missing = sorted(set(usage) - set(ring.keys))
    for key_id in missing:
        command.stdout.write(f"  {key_id:<16} {'NOT IN THE KEYRING':<24} {usage[key_id]:>12,} stored rows: restore "
                             "this data key from your backup")
    moving = sum(n for key_id, n in usage.items() if key_id != ring.primary_id and key_id in ring.keys)
    if moving:
        command.stdout.write(f"{moving:,} rows still to move: run `kami keys rotate-data-key --resume`")
    _retirable(command, ring.primary_id, usage)
    if missing:
        raise CommandError(f"stored rows are sealed with data key(s) {', '.join(missing)}, which the keyring lacks",
                           returncode=1)


def _retirable(command, newest: str, usage: dict[str, int]) -> None:
    idle = [key_id for key_id in keyring_checked().keys if key_id != newest and not usage.get(key_id)]
    if idle:
        command.stdout.write(f"no stored row uses data key(s) {', '.join(idle)} any more: after a fresh `kami backup`, "
                             f"retire each with `kami keys rotate-data-key --retire KEY_ID`")


def _retire(command, key_id: str, *, print_only: bool) -> None:
    ring = data_key_retire(key_id=key_id, actor=ACTOR, write=not print_only)
    if print_only:
        command.stderr.write(f"the keyring without {key_id!r}; set KAMI_DATA_KEY to it on every web and worker machine "
                             "and restart them")
        command.stdout.write(ring.text().strip().replace("\n", ","))
        return
    command.stdout.write(f"retired data key {key_id!r}: {keyring_source()} now holds {', '.join(ring.keys)} "
                         "(and the fingerprint key, unchanged)")


@contextmanager
def _progress(command):
    """A bar on stderr when it is a terminal, counting keys moved; silent otherwise."""
    console = console_for(command.stderr)
    columns = [SpinnerColumn(), TextColumn("re-encrypting"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn()]
    with Progress(*columns, console=console, disable=not console.is_terminal, transient=True) as bar:
        task = bar.add_task("re-encrypting", total=None)
        yield (lambda total: bar.update(task, total=total), lambda done: bar.update(task, completed=done))
