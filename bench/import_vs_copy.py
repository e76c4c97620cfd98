"""Kami's key import against each database's own bulk load, on the same file, in the same run.

Run by hand (no assertions); per engine it prints wall time, keys per second and peak RSS for
Kami's import and for the engine's baseline, and the ratio:

    .venv/bin/python bench/import_vs_copy.py                                  # 1,000,000 lines, all three
    .venv/bin/python bench/import_vs_copy.py --lines 200000 --engines postgres --path job

- PostgreSQL: `COPY` of the file into a table with the same unique index as the keys'
  (product, key), `postgres://postgres@127.0.0.1:5432` (--postgres).
- MariaDB: `LOAD DATA LOCAL INFILE` into such a table, `mysql://root@127.0.0.1:3306` (--mariadb).
- SQLite: one transaction of `executemany` of the same rows into such a table, in a file.
- PostgreSQL also: the floor of the key table itself, `COPY` of the same keys already sealed
  (sealing not timed) straight into the key table, in one transaction: its indexes and foreign
  key cost what no import code can save (bench/key_table_costs.py takes them apart). And for
  Kami, the floor and the baseline, the CPU time of the server process that did the work (from
  /proc: the server runs on this machine), which follows the machine's load far less than the
  wall time does.

Kami's side runs in a child process per engine on a fresh database (`kami_bench_import`, or
--database; dropped afterwards unless --keep): migrate, then the file through `keys_import`
(--path cli: what `kami keys import` runs) or through the back office's background job (--path job:
`import_job_create` + the worker's `import_jobs_run_due`). Either reads, validates,
normalises, encrypts (AES-256-GCM), fingerprints (HMAC-SHA256), dedupes against the database
and writes in chunks. The baseline runs right after, in the same database server.
"""
from __future__ import annotations

import argparse
import atexit
import base64
import json
import os
import resource
import secrets
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from key_table_costs import server_cpu  # bench/ is the script's directory: on sys.path

ROOT = Path(__file__).resolve().parents[1]
DB = "kami_bench_import"
SERVERS = {"postgres": "postgres://postgres@127.0.0.1:5432", "mariadb": "mysql://root@127.0.0.1:3306"}


def main() -> None:
    args = _arguments()
    if args.child:
        print(json.dumps(_kami_import(args.child, Path(args.file), args.path)))
        return
    work = Path(tempfile.mkdtemp(prefix="kami-bench-"))
    atexit.register(shutil.rmtree, work, ignore_errors=True)  # the key file (23 MiB a million) and the data dir
    keys = work / "keys.txt"
    _write_keys(keys, args.lines)
    print(f"file: {args.lines:,} lines, {keys.stat().st_size / 2**20:.1f} MiB; Kami through the {args.path} path")
    for engine in args.engines:
        url = _database_url(engine, args, work)
        _recreate(engine, url)
        try:
            kami = _child(url, keys, args.path, work)
            base_name, base_seconds, base_cpu = BASELINES[engine](url, keys)
        finally:
            if not args.keep:
                _drop(engine, url)
        print(f"{engine:9s} kami   : {kami['seconds']:7.1f} s  {kami['imported'] / kami['seconds']:9,.0f} keys/s  "
              f"peak RSS {kami['rss_peak'] / 1024:.0f} MiB (before the import {kami['rss_before'] / 1024:.0f} MiB)")
        print(f"{engine:9s} {base_name:7s}: {base_seconds:7.1f} s  {args.lines / base_seconds:9,.0f} rows/s")
        print(f"{engine:9s} ratio  : kami takes {kami['seconds'] / base_seconds:.2f}× the time of the baseline")
        if "floor" in kami:
            print(f"{engine:9s} floor  : {kami['floor']:7.1f} s  COPY of the sealed keys into the key table; "
                  f"kami takes {kami['seconds'] / kami['floor']:.2f}× the floor, the floor {kami['floor'] / base_seconds:.2f}× "
                  "the baseline")
            print(f"{engine:9s} server CPU: kami {kami['server_cpu']:.1f} s, floor {kami['floor_cpu']:.1f} s, "
                  f"{base_name} {base_cpu:.1f} s; the floor {kami['floor_cpu'] / base_cpu:.2f}× the baseline's")


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--engines", nargs="+", choices=("postgres", "mariadb", "sqlite"),
                        default=["postgres", "mariadb", "sqlite"])
    parser.add_argument("--path", choices=("cli", "job"), default="cli",
                        help="cli: keys_import (kami keys import); job: the back office's background import job")
    parser.add_argument("--postgres", default=SERVERS["postgres"], help="PostgreSQL URL without a database name")
    parser.add_argument("--mariadb", default=SERVERS["mariadb"], help="MariaDB URL without a database name")
    parser.add_argument("--database", default=DB, help="the bench database's name on each server (made, then dropped)")
    parser.add_argument("--keep", action="store_true", help="keep the bench databases afterwards")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--file", help=argparse.SUPPRESS)
    return parser.parse_args()


def _write_keys(path: Path, lines: int) -> None:
    """Distinct keys shaped like real gift codes; written in blocks, never held whole."""
    with path.open("w", encoding="ascii") as f:
        for start in range(0, lines, 10_000):
            f.write("".join(f"GIFT-{secrets.token_hex(4).upper()}-{i:09d}\n" for i in range(start, min(start + 10_000, lines))))


def _database_url(engine: str, args: argparse.Namespace, work: Path) -> str:
    if engine == "sqlite":
        return f"sqlite:///{work / 'bench.sqlite3'}"
    return f"{getattr(args, engine)}/{args.database}"


def _admin(url: str):
    """A connection to the server (not to the bench database), autocommit."""
    server = url.rsplit("/", 1)[0]
    if url.startswith("postgres"):
        import psycopg

        return psycopg.connect(f"{server}/postgres", autocommit=True)
    import pymysql

    return pymysql.connect(**_mysql_params(server), autocommit=True)


def _mysql_params(url: str, database: str | None = None) -> dict:
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    params = {"host": parts.hostname, "port": parts.port or 3306, "user": parts.username or "root",
              "password": parts.password or "", "local_infile": True, "charset": "utf8mb4"}
    if database:
        params["database"] = database
    return params


def _recreate(engine: str, url: str) -> None:
    _drop(engine, url)
    if engine == "sqlite":
        return
    with _admin(url) as conn:
        if engine == "postgres":
            conn.execute(f"CREATE DATABASE {_name(url)}")
        else:
            with conn.cursor() as cur:
                cur.execute(f"CREATE DATABASE {_name(url)} CHARACTER SET utf8mb4")


def _name(url: str) -> str:
    return url.rsplit("/", 1)[1]


def _drop(engine: str, url: str) -> None:
    if engine == "sqlite":
        Path(url.removeprefix("sqlite:///")).unlink(missing_ok=True)
        return
    with _admin(url) as conn:
        if engine == "postgres":
            conn.execute(f"DROP DATABASE IF EXISTS {_name(url)} WITH (FORCE)")
        else:
            with conn.cursor() as cur:
                cur.execute(f"DROP DATABASE IF EXISTS {_name(url)}")


def _child(url: str, keys: Path, path: str, work: Path) -> dict:
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "kami.settings", "DATABASE_URL": url, "KAMI_DATA_DIR": str(work),
           "KAMI_DATA_KEY": "kbench:" + base64.b64encode(secrets.token_bytes(32)).decode(), "KAMI_LOG_LEVEL": "WARNING",
           "KAMI_IMPORT_MAX_BYTES": str(4 * 2**30)}
    out = subprocess.run([sys.executable, __file__, "--child", url, "--file", str(keys), "--path", path], env=env,
                         check=True, capture_output=True, text=True, cwd=ROOT)
    return json.loads(out.stdout.strip().splitlines()[-1])


def _kami_import(url: str, keys: Path, path: str) -> dict:
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from decimal import Decimal

    from django.core.management import call_command

    from kami.catalog.services import product_create

    call_command("migrate", verbosity=0)
    product = product_create(slug="bench", name="Bench", price=Decimal("1.00"))
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    pid = _backend_pid() if url.startswith("postgres") else None
    cpu = server_cpu(pid) if pid else 0.0
    started = time.perf_counter()
    if path == "cli":
        from kami.stock.services import keys_import

        with keys.open("rb") as stream:
            imported = keys_import(product=product, stream=stream, source="bench").imported
    else:
        from kami.fulfilment.imports import import_jobs_run_due
        from kami.stock.jobs import import_job_create
        from kami.stock.models import ImportJob

        with keys.open("rb") as stream:
            job = import_job_create(product=product, stream=stream, filename="keys.txt", actor="bench")
        import_jobs_run_due(owner="bench")
        imported = ImportJob.objects.get(pk=job.pk).imported
    seconds = time.perf_counter() - started
    result = {"seconds": seconds, "imported": imported, "rss_before": rss_before,
              "rss_peak": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}
    if pid:
        result["server_cpu"] = server_cpu(pid) - cpu
        result["floor"], result["floor_cpu"] = _floor_postgres(keys)
    return result


def _backend_pid() -> int:
    """The PostgreSQL server process serving Django's connection: the import's one connection."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        return cursor.fetchone()[0]


def _floor_postgres(keys: Path) -> tuple[float, float]:
    """Seconds, and the server's CPU seconds, to COPY the file's keys, sealed beforehand chunk by
    chunk (not timed), into the key table for a second product, one transaction: the table's
    own cost per key."""
    from decimal import Decimal

    from django.db import connection, transaction

    from kami.catalog.services import product_create
    from kami.stock import bulk
    from kami.stock.importer import batch_start
    from kami.stock.vault import keys_seal_bulk

    product = product_create(slug="floor", name="Floor", price=Decimal("1.00"))
    batch, _ = batch_start(product=product, source="floor", actor="bench")
    lead, tail = bulk._fixed_values(batch)
    sealed: list = []  # all of it first (a few hundred MB): the server must not work while we seal
    with keys.open("rb") as f:
        while lines := f.readlines(1 << 20):
            sealed += keys_seal_bulk([line.decode().strip() for line in lines], product_id=product.pk)
    pid = _backend_pid()
    cpu, started = server_cpu(pid), time.perf_counter()
    with transaction.atomic(), connection.cursor() as cursor:
        with cursor.cursor.copy(bulk.COPY_POSTGRES.format(**bulk._names())) as copy:
            copy.set_types(["int8", "int8", "text", "bytea", "text", "text", "timestamptz", "text", "bool", "int2"])
            for key_id, ciphertext, fingerprint in sealed:
                copy.write_row((*lead, key_id, ciphertext, fingerprint, *tail))
    seconds = time.perf_counter() - started  # the commit included (foreign keys checked then)
    return seconds, server_cpu(pid) - cpu


def _copy_postgres(url: str, keys: Path) -> tuple[str, float, float]:
    import psycopg

    with psycopg.connect(url) as conn:
        conn.execute("CREATE TABLE bench_copy (product_id bigint NOT NULL DEFAULT 1, key text NOT NULL, "
                     "UNIQUE (product_id, key))")
        conn.commit()
        pid = conn.info.backend_pid
        cpu, started = server_cpu(pid), time.perf_counter()
        with conn.cursor() as cur, keys.open("rb") as f:
            with cur.copy("COPY bench_copy (key) FROM STDIN") as copy:
                while block := f.read(1 << 20):
                    copy.write(block)
        conn.commit()
        seconds = time.perf_counter() - started
        return "COPY", seconds, server_cpu(pid) - cpu


def _load_data_mariadb(url: str, keys: Path) -> tuple[str, float, None]:
    import pymysql

    with pymysql.connect(**_mysql_params(url.rsplit("/", 1)[0], _name(url))) as conn, conn.cursor() as cur:
        cur.execute("CREATE TABLE bench_copy (product_id bigint NOT NULL DEFAULT 1, `key` varchar(255) NOT NULL, "
                    "UNIQUE (product_id, `key`)) ENGINE=InnoDB")
        started = time.perf_counter()
        cur.execute("LOAD DATA LOCAL INFILE %s INTO TABLE bench_copy LINES TERMINATED BY '\\n' (`key`)", [str(keys)])
        conn.commit()
        return "LOAD DATA", time.perf_counter() - started, None


def _executemany_sqlite(url: str, keys: Path) -> tuple[str, float, None]:
    conn = sqlite3.connect(url.removeprefix("sqlite:///"), isolation_level=None)
    conn.executescript("PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; CREATE TABLE bench_copy "
                       "(product_id integer NOT NULL DEFAULT 1, key text NOT NULL, UNIQUE (product_id, key))")
    started = time.perf_counter()
    with keys.open("r", encoding="utf-8") as f:
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany("INSERT INTO bench_copy (key) VALUES (?)", ((line.rstrip("\n"),) for line in f))
        conn.execute("COMMIT")
    seconds = time.perf_counter() - started
    conn.close()
    return "executemany", seconds, None


BASELINES = {"postgres": _copy_postgres, "mariadb": _load_data_mariadb, "sqlite": _executemany_sqlite}


if __name__ == "__main__":
    main()
