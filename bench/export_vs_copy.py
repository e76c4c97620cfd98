"""Kami's key export and generation against the database's own bulk paths, same rows, same run.

Run by hand (no assertions); it prints wall time, keys per second, RSS growth and ratios:

    .venv/bin/python bench/export_vs_copy.py                                  # PostgreSQL, 1,000,000 keys
    .venv/bin/python bench/export_vs_copy.py --engine mariadb --keys 200000
    .venv/bin/python bench/export_vs_copy.py --engine sqlite

It (re)creates the database `kami_bench_export` (`--database`; SQLite: a file in a temporary directory),
migrates it, then in order:

1. imports N distinct keys from a file with `keys_import` (the generation's yardstick);
2. generates N keys into a second product with `keys_generate` (draw, AES-GCM, HMAC, same write
   path as the import);
3. exports the imported product's N available keys with `keys_export`, as txt and as csv, to a
   file (reading, decrypting, formatting, writing; the audit row included);
4. reads the same rows with the engine's raw bulk path into a file: PostgreSQL `COPY (SELECT
   id, fingerprint, key_id, ciphertext, seal, status, sold_at … ORDER BY id) TO STDOUT`;
   MariaDB and SQLite a raw driver `SELECT` of the same columns, fetched 10,000 rows at a time
   (PyMySQL's unbuffered cursor; sqlite3's cursor) and dropped: no formatting, no file.

`--no-generate` skips step 2; `--keep` keeps the database; `--reuse` uses a kept one (skips 1-2).
"""
from __future__ import annotations

import argparse
import base64
import os
import secrets
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DB = "kami_bench_export"  # the default of --database
SERVERS = {"postgres": "postgres://postgres@127.0.0.1:5432", "mariadb": "mysql://root@127.0.0.1:3306"}
BENCH_KEY = "kbench:" + base64.b64encode(b"\x07" * 32).decode()  # fixed: --reuse must open the kept keys
COLUMNS = ("id", "fingerprint", "key_id", "ciphertext", "seal", "status", "sold_at")


def main() -> None:
    args = _arguments()
    work = Path(args.workdir or tempfile.mkdtemp(prefix="kami-bench-export-"))
    work.mkdir(parents=True, exist_ok=True)
    url = _database_url(args, work)
    if not args.reuse:
        _recreate(args, work)
    _django(url, work)
    try:
        products = _populate(args, work) if not args.reuse else _products()
        _export(args, work, products["import"])
    finally:
        if not args.keep and not args.reuse:
            _drop(args)


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keys", type=int, default=1_000_000)
    parser.add_argument("--engine", choices=("postgres", "mariadb", "sqlite"), default="postgres")
    parser.add_argument("--server", help="server URL without a database name (default: the local one)")
    parser.add_argument("--workdir", help="where the files go (default: a new temporary directory)")
    parser.add_argument("--database", default=DB, help="the server database's name (dropped and created again)")
    parser.add_argument("--keep", action="store_true", help="keep the database afterwards")
    parser.add_argument("--reuse", action="store_true", help="export from a database kept by --keep")
    parser.add_argument("--no-generate", dest="generate", action="store_false")
    parser.add_argument("--formats", default="txt,csv")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each export and its baseline, alternating")
    return parser.parse_args()


def _database_url(args, work: Path) -> str:
    if args.engine == "sqlite":
        return f"sqlite:///{work / 'bench.sqlite3'}"
    return f"{args.server or SERVERS[args.engine]}/{args.database}"


def _recreate(args, work: Path) -> None:
    if args.engine == "sqlite":
        for name in ("bench.sqlite3", "bench.sqlite3-wal", "bench.sqlite3-shm"):
            (work / name).unlink(missing_ok=True)
    elif args.engine == "postgres":
        import psycopg

        with psycopg.connect(f"{args.server or SERVERS['postgres']}/postgres", autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {args.database} WITH (FORCE)")
            conn.execute(f"CREATE DATABASE {args.database}")
    else:
        with _mariadb(args, database=None) as conn, conn.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS {args.database}")
            cur.execute(f"CREATE DATABASE {args.database} CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci")


def _drop(args) -> None:
    from django.db import connection

    connection.close()
    if args.engine == "postgres":
        import psycopg

        with psycopg.connect(f"{args.server or SERVERS['postgres']}/postgres", autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {args.database} WITH (FORCE)")
    elif args.engine == "mariadb":
        with _mariadb(args, database=None) as conn, conn.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS {args.database}")


def _mariadb(args, *, database: str | None, **options):
    import pymysql
    from urllib.parse import urlparse

    url = urlparse(args.server or SERVERS["mariadb"])
    return pymysql.connect(host=url.hostname, port=url.port or 3306, user=url.username or "root",
                           password=url.password or "", database=database, charset="utf8mb4", **options)


def _django(url: str, work: Path) -> None:
    os.environ.update({"DJANGO_SETTINGS_MODULE": "kami.settings", "DATABASE_URL": url, "KAMI_DATA_DIR": str(work),
                       "KAMI_DATA_KEY": BENCH_KEY, "KAMI_LOG_LEVEL": "WARNING"})
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()


def _populate(args, work: Path) -> dict:
    from decimal import Decimal

    from django.core.management import call_command

    from kami.catalog.services import product_create
    from kami.stock.services import keys_generate, keys_import

    call_command("migrate", verbosity=0)
    imported = product_create(slug="bench-import", name="Bench import", price=Decimal("1.00"))
    generated = product_create(slug="bench-generate", name="Bench generate", price=Decimal("1.00"))
    path = work / "keys.txt"
    _write_keys(path, args.keys)
    with path.open("rb") as stream:
        seconds, _, _, report = _timed(lambda: keys_import(product=imported, stream=stream, source="bench"))
    print(f"engine {args.engine}, {args.keys:,} keys")
    print(f"import    (keys_import)   : {seconds:7.1f} s  {report.imported / seconds:9,.0f} keys/s")
    if args.generate:
        gen_seconds, growth, _, report = _timed(
            lambda: keys_generate(product=generated, count=args.keys, actor="bench"))
        print(f"generate  (keys_generate) : {gen_seconds:7.1f} s  {report.imported / gen_seconds:9,.0f} keys/s  "
              f"RSS +{growth / 2**20:.0f} MiB  ratio to the import {gen_seconds / seconds:.2f}×")
    return {"import": imported}


def _products() -> dict:
    from kami.catalog.models import Product

    return {"import": Product.objects.get(slug="bench-import")}


def _write_keys(path: Path, lines: int) -> None:
    """Distinct keys shaped like real gift codes; written in blocks, never held whole."""
    with path.open("w", encoding="ascii") as f:
        for start in range(0, lines, 10_000):
            f.write("".join(f"GIFT-{secrets.token_hex(4).upper()}-{i:09d}\n"
                            for i in range(start, min(start + 10_000, lines))))


def _export(args, work: Path, product) -> None:
    """Each format `--repeat` times, the export and its baseline alternating, so both meet the
    same load; the figures are the best of the runs and the ratio is best against best."""
    from kami.stock.services import keys_export

    for fmt in args.formats.split(","):
        kami, base = [], []
        for _ in range(args.repeat):
            path = work / f"export.{fmt}"
            with path.open("w", encoding="utf-8", newline="") as out:
                cpu = time.process_time()
                seconds, growth, queued, written = _timed(
                    lambda: keys_export(product=product, status="available", fmt=fmt, out=out, actor="bench"))
                kami.append((seconds, time.process_time() - cpu, growth, queued, written, path.stat().st_size))
            base.append(_baseline(args, work, product.pk))
        seconds, cpu, growth, queued, written, size = min(kami)
        base_seconds, base_rows, base_queued = min(base)
        print(f"export {fmt} (keys_export)  : {seconds:7.2f} s  {written / seconds:9,.0f} keys/s  "
              f"{size / 2**20:.0f} MiB  Python CPU {cpu:.2f} s  waiting for a CPU {queued:.2f} s  "
              f"RSS +{growth / 2**20:.0f} MiB   (runs: {', '.join(f'{k[0]:.2f}' for k in kami)})")
        print(f"  {_baseline_name(args.engine):23}: {base_seconds:7.2f} s  {base_rows / base_seconds:9,.0f} rows/s"
              f"  waiting for a CPU {base_queued:.2f} s   (runs: {', '.join(f'{b[0]:.2f}' for b in base)})")
        print(f"  ratio                  : {seconds / base_seconds:.2f}× the baseline (best against best)")


def _baseline_name(engine: str) -> str:
    return {"postgres": "COPY (SELECT …) TO STDOUT", "mariadb": "PyMySQL SELECT, streamed",
            "sqlite": "sqlite3 SELECT"}[engine]


def _baseline(args, work: Path, product_id: int) -> tuple[float, int, float]:
    from django.db import connection

    select = (f"SELECT {', '.join(COLUMNS)} FROM stock_key WHERE product_id = {int(product_id)} "
              "AND status = 'available' ORDER BY id")
    started, rows, waits = time.perf_counter(), 0, _queued()
    with (work / "baseline.out").open("wb") as out:
        if args.engine == "postgres":
            connection.ensure_connection()
            with connection.connection.cursor() as cur, cur.copy(f"COPY ({select}) TO STDOUT") as copy:
                for block in copy:
                    out.write(block)
                    # One line per row (COPY's text format escapes newlines); psycopg hands a
                    # memoryview, which has no count(): a copy of the block, a memcpy.
                    rows += bytes(block).count(b"\n")
        elif args.engine == "mariadb":
            import pymysql.cursors

            streamed = {"database": args.database, "cursorclass": pymysql.cursors.SSCursor}
            with _mariadb(args, **streamed) as conn, conn.cursor() as cur:
                cur.execute(select)
                while batch := cur.fetchmany(10_000):
                    rows += len(batch)
        else:
            import sqlite3

            conn = sqlite3.connect(str(work / "bench.sqlite3"))
            cur = conn.execute(select)
            while batch := cur.fetchmany(10_000):
                rows += len(batch)
            conn.close()
    seconds, now = time.perf_counter() - started, _queued()
    return seconds, rows, sum(now[tid] - waits.get(tid, 0) for tid in now) / 1e9


def _timed(work):
    """(seconds, peak RSS growth in bytes, seconds waiting for a CPU, result) of `work()`, RSS
    and each thread's wait sampled every 20 ms (a thread that ends between samples loses up to
    20 ms of its wait)."""
    start_rss = peak = _rss()
    start_waits, waits = _queued(), {}
    done = threading.Event()

    def watch():
        nonlocal peak
        watcher_id = threading.get_native_id()
        while not done.wait(0.02):
            peak = max(peak, _rss())
            waits.update((tid, wait) for tid, wait in _queued().items() if tid != watcher_id)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    started = time.perf_counter()
    try:
        result = work()
    finally:
        seconds = time.perf_counter() - started
        done.set()
        watcher.join()
    waits.update(_queued())
    return seconds, peak - start_rss, sum(wait - start_waits.get(tid, 0) for tid, wait in waits.items()) / 1e9, result


def _queued() -> dict[int, int]:
    """{thread id: nanoseconds it has waited runnable for a CPU} for this process's threads
    (/proc/<pid>/task/<tid>/schedstat, 2nd field): on a loaded machine, the part of the wall
    time that is neither CPU nor I/O."""
    waits = {}
    for task in Path("/proc/self/task").iterdir():
        try:
            waits[int(task.name)] = int((task / "schedstat").read_text().split()[1])
        except (OSError, IndexError, ValueError):
            continue  # a thread that ended meanwhile, or a kernel without schedstats
    return waits


def _rss() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


if __name__ == "__main__":
    main()
