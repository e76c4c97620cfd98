"""The `kami` console command: Django's management commands plus Kami's own.

Exit status: 0 done · 2 bad usage or bad input (the message on stderr names it) · 1 other failure.
"""
from __future__ import annotations

import os
import sys


def main(argv: list[str] | None = None) -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "kami.settings")
    from django.core.management import execute_from_command_line

    args = ["kami", *(sys.argv[1:] if argv is None else argv)]
    if len(args) == 1:
        args.append("help")
    execute_from_command_line(args)


if __name__ == "__main__":
    main()
