"""A private database server for one test, so the test can stop and start it: the shared servers
serve other test runs, whose connections a restart would cut. Throwaway data dir under /tmp,
a free loopback port, fsync off; run as the engine's own OS user when we are root."""
from __future__ import annotations

import glob
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from tests.ports import free_port


def _as(user: str, argv: list[str]) -> list[str]:
    return ["runuser", "-u", user, "--", *argv] if os.geteuid() == 0 else argv


class PrivatePostgres:
    engine = "postgresql"

    def __init__(self):
        found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
        if not found:
            pytest.skip("PostgreSQL server binaries (initdb, pg_ctl) not installed: apt-get install postgresql")
        self.bin = Path(found[-1]).parent
        self.dir = Path(tempfile.mkdtemp(prefix="kami-pg-"))
        self.port = free_port()
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres")
        subprocess.run(_as("postgres", [str(self.bin / "initdb"), "-D", str(self.dir / "data"), "-A", "trust", "-U",
                                        "postgres", "-E", "UTF8", "--no-sync"]), check=True, capture_output=True)
        self.url = f"postgres://postgres@127.0.0.1:{self.port}/postgres"

    def _ctl(self, *args: str) -> None:
        options = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off"
        subprocess.run(_as("postgres", [str(self.bin / "pg_ctl"), "-D", str(self.dir / "data"), "-o", options, "-w",
                                        "-l", str(self.dir / "server.log"), *args]), check=True, capture_output=True)

    def create_database(self) -> None:
        """The `postgres` database is the shop's: nothing else lives on this server."""

    def start(self) -> None:
        self._ctl("start")

    def stop(self) -> None:
        self._ctl("-m", "fast", "stop")  # like a restart for an upgrade: connections are cut

    def remove(self) -> None:
        subprocess.run(_as("postgres", [str(self.bin / "pg_ctl"), "-D", str(self.dir / "data"), "-m", "immediate",
                                        "stop"]), capture_output=True)
        shutil.rmtree(self.dir, ignore_errors=True)


class PrivateMariaDB:
    engine = "mysql"

    def __init__(self):
        server, install = shutil.which("mariadbd"), shutil.which("mariadb-install-db")
        if not (server and install):
            pytest.skip("MariaDB server binaries (mariadbd, mariadb-install-db) not installed")
        self.server = server
        self.dir = Path(tempfile.mkdtemp(prefix="kami-mariadb-"))
        self.port = free_port()
        if os.geteuid() == 0:
            shutil.chown(self.dir, "mysql")
        subprocess.run(_as("mysql", [install, f"--datadir={self.dir / 'data'}", "--auth-root-authentication-method=normal",
                                     "--skip-test-db"]), check=True, capture_output=True)
        self.url = f"mysql://root@127.0.0.1:{self.port}/kami"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        argv = [self.server, "--no-defaults", f"--datadir={self.dir / 'data'}", f"--port={self.port}",
                "--bind-address=127.0.0.1", f"--socket={self.dir / 'sock'}", f"--pid-file={self.dir / 'pid'}",
                "--innodb-flush-log-at-trx-commit=0", "--skip-log-bin", "--character-set-server=utf8mb4"]
        self.proc = subprocess.Popen(_as("mysql", argv), stdout=subprocess.DEVNULL,
                                     stderr=open(self.dir / "server.log", "a"))
        deadline = time.monotonic() + 30
        while not (self.dir / "sock").exists():
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise RuntimeError(f"mariadbd did not start: {(self.dir / 'server.log').read_text()[-2000:]}")
            time.sleep(0.1)
        time.sleep(0.3)

    def create_database(self) -> None:
        import pymysql

        with pymysql.connect(host="127.0.0.1", port=self.port, user="root") as db, db.cursor() as cursor:
            cursor.execute("CREATE DATABASE kami CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci")

    def _signal(self, signum: int) -> None:
        """To mariadbd itself (its pid file), not to runuser in front of it."""
        try:
            os.kill(int((self.dir / "pid").read_text()), signum)
        except (FileNotFoundError, ValueError, ProcessLookupError):
            pass

    def stop(self) -> None:
        if self.proc is not None:
            self._signal(signal.SIGTERM)  # a clean shutdown, like a restart for an upgrade: connections are cut
            self.proc.wait(timeout=60)
            self.proc = None
            (self.dir / "sock").unlink(missing_ok=True)

    def remove(self) -> None:
        if self.proc is not None:
            self._signal(signal.SIGKILL)
            self.proc.wait(timeout=30)
        shutil.rmtree(self.dir, ignore_errors=True)


def db_rows(db, sql: str) -> list[tuple]:
    """The rows of `sql`, read from the private server `db` with the engine's own driver."""
    if db.engine == "postgresql":
        import psycopg

        with psycopg.connect(db.url) as conn:
            return conn.execute(sql).fetchall()
    import pymysql

    with pymysql.connect(host="127.0.0.1", port=db.port, user="root", database="kami") as conn, conn.cursor() as cur:
        cur.execute(sql)
        return list(cur.fetchall())


def db_counts(db, queries: dict[str, str]) -> dict:
    """Each query's single number, read from the private server `db`."""
    return {name: db_rows(db, sql)[0][0] for name, sql in queries.items()}
