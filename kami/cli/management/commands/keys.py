"""`kami keys import|generate|export|void|reseal|rotate-data-key`: thin edges over kami.stock.services.

After an import or a generation the awaiting-stock orders of the product are fulfilled at once,
first paid first served (DESIGN.md §2, restock backfill).
"""
from __future__ import annotations

import os
import stat
import sys
from contextlib import contextmanager
from pathlib import Path

from django.core.management.base import CommandError

from kami.catalog.models import Product
from kami.catalog.selectors import product_get
from kami.cli.base import KamiCommand
from kami.cli.progress import count_progress, import_progress, silence_stdout, utf8_out
from kami.cli.rotate import add_rotate_parser, rotate_handle
from kami.fulfilment.backfill import stock_added
from kami.stock.generator import DEFAULT_PATTERN, pattern_bits
from kami.stock.report import ImportReport, line_list
from kami.stock.selectors import awaiting_count
from kami.stock.services import (EXPORT_FORMATS, EXPORT_STATUSES, key_void, keys_export, keys_generate, keys_import,
                                 keys_reseal)

ACTOR = "cli"


class Command(KamiCommand):
    help = "Import, generate, export and void card keys; rotate the data key that encrypts them."
    stealth_options = ("stdin",)  # tests hand a bytes stream in place of stdin

    def add_arguments(self, parser):
        actions = parser.add_subparsers(dest="action", required=True,
                                        metavar="{import,generate,export,void,reseal,rotate-data-key}")
        imp = actions.add_parser("import", help="import keys from a file, one per line (- reads stdin)")
        imp.add_argument("slug", metavar="SLUG")
        imp.add_argument("file", metavar="FILE", help="a UTF-8 text file with one key per line, or - for stdin")
        gen = actions.add_parser("generate", help="generate random keys")
        gen.add_argument("slug", metavar="SLUG")
        gen.add_argument("--count", type=int, required=True)
        gen.add_argument("--pattern", default=DEFAULT_PATTERN,
                         help=f"each X is a random symbol, the rest is kept (default {DEFAULT_PATTERN}, 80 bits)")
        exp = actions.add_parser("export", help="write keys to stdout (the export is audit-logged)")
        exp.add_argument("slug", metavar="SLUG")
        exp.add_argument("--status", default="available", choices=EXPORT_STATUSES)
        exp.add_argument("--format", dest="fmt", default="txt", choices=EXPORT_FORMATS,
                         help="txt: one key per line, exactly as stored · csv: key,status,order_no,sold_at; "
                              "a cell starting with = + - @ tab or CR gets a leading ' so spreadsheets never "
                              "run it as a formula")
        void = actions.add_parser("void", help="take an available key off sale for good")
        void.add_argument("slug", metavar="SLUG")
        void.add_argument("ref", metavar="FINGERPRINT_PREFIX",
                          help="the start of the key's fingerprint (at least 6 hex characters), or #ID")
        void.add_argument("--reason", default="")
        reseal = actions.add_parser("reseal", help="re-encrypt keys stored before ciphertexts were bound to their "
                                                   "product (and under the newest data key)")
        reseal.add_argument("slug", metavar="SLUG")
        add_rotate_parser(actions)  # kami.cli.rotate: the data key, for every product at once

    def handle(self, *args, action: str, slug: str = "", **options):
        if action == "rotate-data-key":
            return rotate_handle(self, **options)
        product = product_get(slug=slug)
        getattr(self, f"_{action}")(product, **options)

    def _import(self, product: Product, *, file: str, **options) -> None:
        with _open_keys(file, stdin=options.get("stdin")) as (stream, size, source):
            with import_progress(self.stderr, total_bytes=size) as advance:
                report = keys_import(product=product, stream=stream, source=source, actor=ACTOR, on_progress=advance)
        self._print_report(report)
        self._backfill(product)

    def _generate(self, product: Product, *, count: int, pattern: str, **_) -> None:
        with count_progress(self.stderr, total=count) as advance:
            report = keys_generate(product=product, count=count, pattern=pattern, actor=ACTOR, on_progress=advance)
        self.stdout.write(f"generated {report.imported:,} keys · pattern {pattern} ({pattern_bits(pattern)} bits)"
                          f" · collisions redrawn {report.duplicates:,}")
        self._backfill(product)

    def _export(self, product: Product, *, status: str, fmt: str, **_) -> None:
        out = utf8_out(self.stdout)
        try:
            written = keys_export(product=product, status=status, fmt=fmt, out=out, actor=ACTOR)
            self.stdout.flush()
        except BrokenPipeError:
            silence_stdout()
            raise CommandError("export stopped: the output was closed before the last key", returncode=1) from None
        self.stderr.write(f"exported {written:,} {status} keys of {product.slug} as {fmt} (recorded in the audit log)")

    def _void(self, product: Product, *, ref: str, reason: str, **_) -> None:
        if ref.startswith("#"):
            if not ref[1:].isdigit():
                raise CommandError(f"{ref!r}: a key id is # and a number, e.g. #42", returncode=2)
            key = key_void(product=product, key_pk=int(ref[1:]), reason=reason, actor=ACTOR)
        else:
            key = key_void(product=product, fingerprint_prefix=ref, reason=reason, actor=ACTOR)
        self.stdout.write(f"voided key #{key.pk} ({key.fingerprint[:8]}) of {product.slug}")

    def _reseal(self, product: Product, **_) -> None:
        done = keys_reseal(product=product, actor=ACTOR)
        self.stdout.write(f"resealed {done:,} keys of {product.slug} (recorded in the audit log)")

    def _print_report(self, report: ImportReport) -> None:
        self.stdout.write(report.summary())
        if report.duplicate_in_file:
            lines = line_list(report.duplicate_in_file_lines, total=report.duplicate_in_file)
            self.stdout.write(f"  duplicate in file: lines {lines}")
        if report.duplicate_stored:
            lines = line_list(report.duplicate_stored_lines, total=report.duplicate_stored)
            self.stdout.write(f"  already stored: lines {lines}")

    def _backfill(self, product: Product) -> None:
        fulfilled = stock_added(product_id=product.pk)
        waiting = awaiting_count(product=product)
        line = f"awaiting-stock orders fulfilled: {fulfilled:,}"
        if waiting:
            line += f" · still waiting: {waiting:,} (import more keys)"
        self.stdout.write(line)


@contextmanager
def _open_keys(file: str, *, stdin=None):
    """(binary stream, size in bytes or None, source label) for FILE or - (stdin)."""
    if file == "-":
        yield (stdin or sys.stdin.buffer), None, "stdin"
        return
    path = Path(file)
    try:
        stream = path.open("rb")
    except FileNotFoundError:
        raise CommandError(f"no such file: {file} (give a text file with one key per line, or - for stdin)",
                           returncode=2) from None
    except IsADirectoryError:
        raise CommandError(f"{file} is a directory: give a text file with one key per line", returncode=2) from None
    except PermissionError:
        raise CommandError(f"cannot read {file}: permission denied", returncode=2) from None
    with stream:
        info = os.fstat(stream.fileno())
        size = info.st_size if stat.S_ISREG(info.st_mode) and info.st_size else None
        yield stream, size, f"file {path.resolve()}"
