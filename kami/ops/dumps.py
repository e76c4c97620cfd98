"""The database inside a backup, one pair of functions per engine, side by side:

- SQLite: the online backup API (a consistent copy while the shop runs); restored with the
  same API into the (empty) target database.
- PostgreSQL: `pg_dump --format=custom` (one snapshot), restored with `pg_restore
  --single-transaction --exit-on-error`. The client must be at least the server's version.
- MariaDB / MySQL: `mariadb-dump --single-transaction --hex-blob` (one InnoDB snapshot, binary
  ciphertexts as hex), restored by piping it into `mariadb`.

Passwords go to the tools through their environment (PGPASSWORD, MYSQL_PWD), never argv."""
from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
from pathlib import Path

from django.db import connection

from kami.core.errors import KamiError

DUMP_NAMES = {"sqlite": "database.sqlite3", "postgresql": "database.pgdump", "mysql": "database.sql"}


def database_dump(target: Path) -> None:
    {"sqlite": _sqlite_dump, "postgresql": _postgres_dump, "mysql": _mysql_dump}[connection.vendor](target)


def database_load(source: Path) -> None:
    {"sqlite": _sqlite_load, "postgresql": _postgres_load, "mysql": _mysql_load}[connection.vendor](source)


def database_tables() -> list[str]:
    return connection.introspection.table_names()


# -- SQLite ---------------------------------------------------------------------------------


def _sqlite_copy(source: str | Path, target: str | Path) -> None:
    origin, copy = sqlite3.connect(source, timeout=20), sqlite3.connect(target, timeout=20)
    try:
        origin.backup(copy)  # page by page, consistent even while the shop writes
    finally:
        origin.close()
        copy.close()


def _sqlite_dump(target: Path) -> None:
    _sqlite_copy(connection.settings_dict["NAME"], target)


def _sqlite_load(source: Path) -> None:
    connection.close()  # the restored pages replace whatever this connection saw
    _sqlite_copy(source, connection.settings_dict["NAME"])


# -- PostgreSQL -----------------------------------------------------------------------------


def _postgres_args() -> tuple[list[str], dict[str, str]]:
    db = connection.settings_dict
    # No host: libpq's own default (the local socket, often with peer auth), as the shop connects.
    args = [f"--{name}={db[key]}" for name, key in (("host", "HOST"), ("port", "PORT"), ("username", "USER")) if db[key]]
    env = {**os.environ, "PGPASSWORD": str(db["PASSWORD"] or ""), "PGCONNECT_TIMEOUT": "10"}
    return args, env


def _postgres_dump(target: Path) -> None:
    args, env = _postgres_args()
    _run([_tool("pg_dump", "postgresql-client"), *args, "--format=custom", "--no-owner", "--no-privileges",
          f"--file={target}", connection.settings_dict["NAME"]], env=env)


def _postgres_load(source: Path) -> None:
    args, env = _postgres_args()
    _run([_tool("pg_restore", "postgresql-client"), *args, "--no-owner", "--no-privileges", "--single-transaction",
          "--exit-on-error", f"--dbname={connection.settings_dict['NAME']}", str(source)], env=env)


# -- MariaDB / MySQL ------------------------------------------------------------------------


def _mysql_args() -> tuple[list[str], dict[str, str]]:
    db = connection.settings_dict
    args = [f"--host={db['HOST'] or 'localhost'}", f"--port={db['PORT'] or 3306}", f"--user={db['USER']}",
            "--default-character-set=utf8mb4"]
    return args, {**os.environ, "MYSQL_PWD": str(db["PASSWORD"] or "")}


def _mysql_dump(target: Path) -> None:
    args, env = _mysql_args()
    dump = _tool("mariadb-dump", "mariadb-client", fallback="mysqldump")
    _run([dump, *args, "--single-transaction", "--hex-blob", "--no-tablespaces", "--skip-lock-tables",
          "--routines", "--triggers", f"--result-file={target}", connection.settings_dict["NAME"]], env=env)


def _mysql_load(source: Path) -> None:
    args, env = _mysql_args()
    client = _tool("mariadb", "mariadb-client", fallback="mysql")
    with open(source, "rb") as dump:
        _run([client, *args, connection.settings_dict["NAME"]], env=env, stdin=dump)


# -- shared ---------------------------------------------------------------------------------


def _tool(name: str, package: str, fallback: str | None = None) -> str:
    found = shutil.which(name) or (fallback and shutil.which(fallback))
    if not found:
        raise KamiError(f"{name} is not installed: apt-get install {package} (the same major version as the server)")
    return found


def _run(argv: list[str], *, env: dict[str, str], stdin=None) -> None:
    done = subprocess.run(argv, env=env, stdin=stdin, capture_output=True, text=True)
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        raise KamiError(f"{Path(argv[0]).name} failed: {' / '.join(tail) or f'exit status {done.returncode}'}")
