"""The databases under bench/notify_throughput.py, side by side (issue 9): each engine makes and
drops databases, copies the shop for a run, counts what a run sold, and runs the write-only
baseline the notify figures are divided by, at the same client count and seconds.

PostgreSQL: each run's shop a `CREATE DATABASE … TEMPLATE` copy of the shop made once (the copy
keeps the template's statistics); the baseline `pgbench -N` (scale 10). Needs psql and pgbench,
postgres@127.0.0.1:5432 with trust auth.

MariaDB: no `CREATE DATABASE … TEMPLATE`. Each run's copy is made on the server: every table's
`SHOW CREATE TABLE` (foreign keys and indexes included, which `CREATE TABLE … LIKE` would drop)
run in the new database, then one `INSERT … SELECT` per table, foreign-key and unique checks off,
in one transaction. For an 8,000-key shop on the loaded machine that took 1.6–2.3 s, about what
`mariadb-dump | mariadb` took at the same moment (1.8–2.5 s; text both ways, two client
processes), where making the shop anew took 156 s. InnoDB keeps its statistics per table, so
each copy is `ANALYZE`d. The baseline: `sysbench oltp_write_only` (per transaction: BEGIN, two UPDATEs,
a DELETE, an INSERT, COMMIT) on `--tables=4 --table-size=10000` in its own database, `--threads`
the client count. Needs sysbench (`apt-get install sysbench`) and root@127.0.0.1:3306 without a
password.
"""
from __future__ import annotations

import re
import subprocess

import pymysql

PG = "postgres://postgres@127.0.0.1:5432"


def psql(sql: str) -> None:
    subprocess.run(["psql", "-h", "127.0.0.1", "-U", "postgres", "-qc", sql], check=True, capture_output=True)


def pgbench_init(db: str = "kami_bench_pgbench") -> None:
    psql(f"DROP DATABASE IF EXISTS {db}")
    psql(f"CREATE DATABASE {db}")
    subprocess.run(["pgbench", "-h", "127.0.0.1", "-U", "postgres", "-i", "-s", "10", "-q", db],
                   check=True, capture_output=True)


def pgbench(clients: int, seconds: int, db: str = "kami_bench_pgbench") -> float:
    out = subprocess.run(["pgbench", "-h", "127.0.0.1", "-U", "postgres", "-N", "-c", str(clients), "-j", "2",
                          "-T", str(seconds), db], check=True, capture_output=True, text=True).stdout
    return float(re.search(r"tps = ([\d.]+)", out).group(1))


class Postgres:
    """The PostgreSQL side: databases through psql, each run's shop a `CREATE DATABASE … TEMPLATE`
    copy (which keeps the template's statistics), the baseline `pgbench -N`."""
    server, label, baseline_label = PG, "postgres", "pgbench -N"

    def create(self, db: str) -> None:
        psql(f"DROP DATABASE IF EXISTS {db}")
        psql(f"CREATE DATABASE {db}")

    def drop(self, db: str) -> None:
        psql(f"DROP DATABASE IF EXISTS {db}")

    def settle(self, db: str) -> None:
        # A shop that has been selling has statistics (autovacuum); a fresh copy made within the minute
        # has none, and the planner then reads every pending order to find a batch's few.
        subprocess.run(["psql", "-h", "127.0.0.1", "-U", "postgres", "-d", db, "-qc", "ANALYZE"], check=True)

    def copy(self, template: str, db: str) -> None:
        psql(f"DROP DATABASE IF EXISTS {db}")
        psql(f"CREATE DATABASE {db} TEMPLATE {template}")
        psql("CHECKPOINT")  # the copy's pages written now, not by a checkpoint in the middle of the run

    def quiet(self, db: str) -> None:
        """After a `pgbench -N` run: what its writes left to do done now — the vacuum autovacuum would
        start within the minute, then a checkpoint — so that the next run, Kami's or pgbench's,
        does not pay for it."""
        subprocess.run(["psql", "-h", "127.0.0.1", "-U", "postgres", "-d", db, "-qc", "VACUUM"], check=True,
                       capture_output=True)
        psql("CHECKPOINT")

    def scalars(self, db: str, sql: str) -> list[int]:
        out = subprocess.run(["psql", "-h", "127.0.0.1", "-U", "postgres", "-d", db, "-tAc", sql],
                             check=True, capture_output=True, text=True).stdout
        return [int(v) for v in out.strip().split("|")]

    def baseline_init(self, db: str) -> None:
        pgbench_init(db)
        self.quiet(db)

    def baseline(self, clients: int, seconds: int, db: str) -> float:
        tps = pgbench(clients, seconds, db)
        self.quiet(db)
        return tps


MY = "mysql://root@127.0.0.1:3306"
SYSBENCH = ["sysbench", "oltp_write_only", "--db-driver=mysql", "--mysql-host=127.0.0.1", "--mysql-port=3306",
            "--mysql-user=root", "--tables=4", "--table-size=10000"]


def _connect(db: str | None = None) -> pymysql.Connection:
    return pymysql.connect(host="127.0.0.1", port=3306, user="root", database=db, charset="utf8mb4", autocommit=True)


def _tables(cur, db: str) -> list[str]:
    cur.execute("SELECT table_name FROM information_schema.tables WHERE table_schema = %s AND table_type = 'BASE TABLE'"
                " ORDER BY table_name", [db])
    return [name for (name,) in cur.fetchall()]


class MariaDB:
    """The MariaDB side: databases through PyMySQL, each run's shop copied table by table on the
    server, the baseline `sysbench oltp_write_only` (the module's docstring says why each)."""
    server, label, baseline_label = MY, "mariadb", "sysbench oltp_write_only"

    def create(self, db: str) -> None:
        """An empty database as Django's tests make theirs (utf8mb4_unicode_ci)."""
        with _connect() as conn, conn.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS `{db}`")
            cur.execute(f"CREATE DATABASE `{db}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci")

    def drop(self, db: str) -> None:
        with _connect() as conn, conn.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS `{db}`")

    def settle(self, db: str) -> None:
        """Statistics, as a shop that has been selling has them."""
        with _connect(db) as conn, conn.cursor() as cur:
            cur.execute("ANALYZE TABLE " + ", ".join(f"`{t}`" for t in _tables(cur, db)))
            cur.fetchall()

    def copy(self, template: str, db: str) -> None:
        """`db` made anew as a copy of `template`: the tables as they were created, then their rows."""
        self.create(db)
        with _connect(db) as conn, conn.cursor() as cur:
            cur.execute("SET SESSION foreign_key_checks = 0, unique_checks = 0")
            tables = _tables(cur, template)
            for table in tables:
                cur.execute(f"SHOW CREATE TABLE `{template}`.`{table}`")
                cur.execute(cur.fetchone()[1])  # unqualified: it lands in `db`, and so do its foreign keys
            cur.execute("BEGIN")
            for table in tables:
                cur.execute(f"INSERT INTO `{table}` SELECT * FROM `{template}`.`{table}`")
            cur.execute("COMMIT")
        self.settle(db)

    def scalars(self, db: str, sql: str) -> list[int]:
        with _connect(db) as conn, conn.cursor() as cur:
            cur.execute(sql)
            return [int(v) for v in cur.fetchone()]

    def baseline_init(self, db: str) -> None:
        self.create(db)
        subprocess.run([*SYSBENCH, f"--mysql-db={db}", "prepare"], check=True, capture_output=True)

    def baseline(self, clients: int, seconds: int, db: str) -> float:
        out = subprocess.run([*SYSBENCH, f"--mysql-db={db}", f"--threads={clients}", f"--time={seconds}", "run"],
                             check=True, capture_output=True, text=True).stdout
        return float(re.search(r"transactions:\s+\d+\s+\(([\d.]+) per sec", out).group(1))


ENGINES = {"postgres": Postgres, "mariadb": MariaDB}


# After a run: orders fulfilled, keys sold, order-key rows, distinct keys among them, fulfilled orders
# holding other than one key. Every 200 must be a fulfilled order with one key of its own.
COUNTS = """SELECT (SELECT count(*) FROM orders_order WHERE status = 'fulfilled'),
                   (SELECT count(*) FROM stock_key WHERE status = 'sold'),
                   (SELECT count(*) FROM orders_orderkey),
                   (SELECT count(DISTINCT key_id) FROM orders_orderkey),
                   (SELECT count(*) FROM orders_order o WHERE o.status = 'fulfilled'
                       AND (SELECT count(*) FROM orders_orderkey k WHERE k.order_id = o.id) <> 1)"""


def counts_check(engine, db: str, label: str, answered: int) -> int:
    """Prints the counts after a run; returns the orders fulfilled."""
    fulfilled, sold, order_keys, distinct, odd = engine.scalars(db, COUNTS)
    good = fulfilled >= answered and fulfilled == sold == order_keys == distinct and odd == 0
    print(f"    {label}: counts {'ok' if good else 'WRONG'}: {answered} answered 200, {fulfilled} orders fulfilled, "
          f"{sold} keys sold, {order_keys} order keys ({distinct} distinct), {odd} fulfilled orders without "
          f"exactly one key", flush=True)
    return fulfilled
