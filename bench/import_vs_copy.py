"""Kami's key import against PostgreSQL's own COPY, on the same file, in the same run.

Run by hand (no assertions); it prints wall time, keys per second and peak RSS for both, and
the ratio. Needs a PostgreSQL server it may create a database on:

    .venv/bin/python bench/import_vs_copy.py                       # 1,000,000 lines
    .venv/bin/python bench/import_vs_copy.py --lines 200000 --server postgres://postgres@127.0.0.1:5432

It (re)creates the database `kami_bench_import`, migrates it, imports the file through
`kami.stock.services.keys_import` (read, validate, normalise, AES-GCM encrypt, HMAC
fingerprint, dedupe against the database, insert in 2,000-key transactions), then COPYs the same
file into a one-column table of the same database, and drops the database (unless --keep).
"""
from __future__ import annotations

import argparse
import base64
import os
import resource
import secrets
import sys
import tempfile
import time
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parents[1]
DB = "kami_bench_import"


def main() -> None:
    args = _arguments()
    work = Path(tempfile.mkdtemp(prefix="kami-bench-"))
    keys = work / "keys.txt"
    _write_keys(keys, args.lines)
    _recreate(args.server)
    try:
        kami_seconds, rss_before, rss_peak, imported = _kami_import(args.server, keys, work)
        copy_seconds, copied = _copy(args.server, keys)
    finally:
        if not args.keep:
            _drop(args.server)
    size = keys.stat().st_size / 2**20
    print(f"file: {args.lines:,} lines, {size:.1f} MiB")
    print(f"kami keys_import : {kami_seconds:7.1f} s  {imported / kami_seconds:9,.0f} keys/s  "
          f"peak RSS {rss_peak / 1024:.0f} MiB (before the import {rss_before / 1024:.0f} MiB)")
    print(f"COPY (1 column)  : {copy_seconds:7.1f} s  {copied / copy_seconds:9,.0f} rows/s")
    print(f"ratio            : kami takes {kami_seconds / copy_seconds:.1f}× the time of a bare COPY")


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--server", default="postgres://postgres@127.0.0.1:5432", help="PostgreSQL URL without a database name")
    parser.add_argument("--keep", action="store_true", help=f"keep the {DB} database afterwards")
    return parser.parse_args()


def _write_keys(path: Path, lines: int) -> None:
    """Distinct keys shaped like real gift codes; written in blocks, never held whole."""
    with path.open("w", encoding="ascii") as f:
        for start in range(0, lines, 10_000):
            f.write("".join(f"GIFT-{secrets.token_hex(4).upper()}-{i:09d}\n" for i in range(start, min(start + 10_000, lines))))


def _recreate(server: str) -> None:
    with psycopg.connect(f"{server}/postgres", autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {DB}")
        conn.execute(f"CREATE DATABASE {DB}")


def _drop(server: str) -> None:
    with psycopg.connect(f"{server}/postgres", autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)")


def _kami_import(server: str, keys: Path, work: Path) -> tuple[float, int, int, int]:
    os.environ.update({
        "DJANGO_SETTINGS_MODULE": "kami.settings", "DATABASE_URL": f"{server}/{DB}", "KAMI_DATA_DIR": str(work),
        "KAMI_DATA_KEY": "kbench:" + base64.b64encode(secrets.token_bytes(32)).decode(), "KAMI_LOG_LEVEL": "WARNING",
    })
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from decimal import Decimal

    from django.core.management import call_command
    from django.db import connection

    from kami.catalog.services import product_create
    from kami.stock.services import keys_import

    call_command("migrate", verbosity=0)
    product = product_create(slug="bench", name="Bench", price=Decimal("1.00"))
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.perf_counter()
    with keys.open("rb") as stream:
        report = keys_import(product=product, stream=stream, source="bench")
    seconds = time.perf_counter() - started
    connection.close()
    return seconds, rss_before, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, report.imported


def _copy(server: str, keys: Path) -> tuple[float, int]:
    with psycopg.connect(f"{server}/{DB}") as conn:
        conn.execute("CREATE TABLE bench_copy (key text NOT NULL)")
        conn.commit()
        started = time.perf_counter()
        with conn.cursor() as cur, keys.open("rb") as f:
            with cur.copy("COPY bench_copy (key) FROM STDIN") as copy:
                while block := f.read(1 << 20):
                    copy.write(block)
        conn.commit()
        seconds = time.perf_counter() - started
        rows = conn.execute("SELECT count(*) FROM bench_copy").fetchone()[0]
    return seconds, rows


if __name__ == "__main__":
    main()
