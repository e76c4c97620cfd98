"""The backup passphrase: from a file (cron, systemd timers) or typed at a prompt, never argv."""
from __future__ import annotations

import getpass
import sys

from kami.core.errors import BadInput


def passphrase_read(path: str | None, *, confirm: bool) -> str:
    if path:
        try:
            with open(path, encoding="utf-8") as f:
                return f.readline().rstrip("\r\n")
        except OSError as exc:
            raise BadInput(f"--passphrase-file {path}: {exc.strerror}") from None
    if not sys.stdin.isatty():
        raise BadInput("no terminal to ask the passphrase at: use --passphrase-file FILE")
    first = getpass.getpass("Backup passphrase: ")
    if confirm and getpass.getpass("Again: ") != first:
        raise BadInput("the two passphrases differ: run the command again")
    return first
