"""Notifications confirmed per second on PostgreSQL, through the real HTTP server (`kami serve`),
against `pgbench -N` with the same client count in the same run.

    .venv/bin/python bench/notify_throughput.py [--keys 30000] [--seconds 10] [--clients 16 64] \
        [--serve-args '--threads 4'] [--db-prefix kami_bench]

Needs a local PostgreSQL (postgres@127.0.0.1:5432, trust auth) and pgbench. Creates and drops
its own databases (<prefix>_notify, <prefix>_pgbench). Prints figures; asserts nothing.
"""
from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

PG = "postgres://postgres@127.0.0.1:5432"
REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # the helpers tests and benchmarks share
from tests.ports import free_port  # noqa: E402


def psql(sql: str) -> None:
    subprocess.run(["psql", "-h", "127.0.0.1", "-U", "postgres", "-qc", sql], check=True, capture_output=True)



def setup_shop(env: dict, keys: int, orders: int) -> list[tuple[str, str, str, str]]:
    """Migrate, seed one hot product, create pending orders; return signed notifications."""
    subprocess.run([sys.executable, "-m", "kami", "migrate", "-v", "0"], env=env, check=True, cwd=REPO)
    code = f"""
import json, django, sys
django.setup()
from decimal import Decimal
from kami.catalog.services import product_create
from kami.orders.services import order_create
from kami.payments.services import gateway_configure
from kami.payments.registry import gateway_get
from kami.stock.models import Key
from kami.stock.vault import key_seal
p = product_create(slug="hot", name="Hot", price=Decimal("9.90"), max_qty=5)
rows = []
for i in range({keys}):
    kid, blob, fp = key_seal(f"BENCH-{{i:08d}}", product_id=p.pk)
    rows.append(Key(product=p, key_id=kid, ciphertext=blob, fingerprint=fp))
Key.objects.bulk_create(rows, batch_size=5000)
gateway_configure(name="sandbox", values={{}}, enable=True)
gw = gateway_get("sandbox")
made = [order_create(product=p, quantity=1, email=f"b{{i}}@x.test", gateway="sandbox")[0] for i in range({orders})]
out = []
for i, o in enumerate(made):  # signed last: the sandbox's 5-minute window starts when setup ends
    body = gw.notification_body(order_no=o.order_no, trade_no=f"T{{i}}", amount=str(o.amount), currency=o.currency)
    out.append([o.order_no, body.decode(), gw.sign(body)])
json.dump(out, sys.stdout)
"""
    done = subprocess.run([sys.executable, "-c", code], env=env, check=True, cwd=REPO, capture_output=True, text=True)
    return json.loads(done.stdout)


async def send_all(url: str, jobs: list, clients: int, seconds: float) -> tuple[int, list[float]]:
    latencies: list[float] = []
    queue = list(reversed(jobs))
    stop = time.perf_counter() + seconds

    async def sender(client: httpx.AsyncClient):
        while queue and time.perf_counter() < stop:
            _, body, sig = queue.pop()
            t0 = time.perf_counter()
            r = await client.post(url, content=body, headers={"Content-Type": "application/json", "X-Sandbox-Signature": sig})
            latencies.append(time.perf_counter() - t0)
            if r.status_code != 200:
                raise SystemExit(f"notify answered {r.status_code}: {r.text[:200]}")

    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(limits=limits, timeout=60) as client:
        t0 = time.perf_counter()
        await asyncio.gather(*(sender(client) for _ in range(clients)))
        return len(latencies), latencies + [time.perf_counter() - t0]


def pgbench_init(db: str = "kami_bench_pgbench") -> None:
    psql(f"DROP DATABASE IF EXISTS {db}")
    psql(f"CREATE DATABASE {db}")
    subprocess.run(["pgbench", "-h", "127.0.0.1", "-U", "postgres", "-i", "-s", "10", "-q", db],
                   check=True, capture_output=True)


def pgbench(clients: int, seconds: int, db: str = "kami_bench_pgbench") -> float:
    out = subprocess.run(["pgbench", "-h", "127.0.0.1", "-U", "postgres", "-N", "-c", str(clients), "-j", "2",
                          "-T", str(seconds), db], check=True, capture_output=True, text=True).stdout
    return float(re.search(r"tps = ([\d.]+)", out).group(1))


def base_env(db: str) -> dict:
    return {**os.environ, "DATABASE_URL": f"{PG}/{db}", "DJANGO_SETTINGS_MODULE": "kami.settings",
            "KAMI_DATA_DIR": tempfile.mkdtemp(prefix="kami-bench-"), "KAMI_LOG_LEVEL": "WARNING",
            "KAMI_DATA_KEY": "kb:" + base64.b64encode(os.urandom(32)).decode(), "KAMI_SECRET_KEY": "bench",
            "KAMI_SANDBOX": "1"}  # the sandbox plays the gateway: live only where asked for


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--keys", type=int, default=30000)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--clients", type=int, nargs="+", default=[16, 64])
    parser.add_argument("--serve-args", default="--threads 4",
                        help="passed to `kami serve --no-worker` (e.g. '--server waitress --threads 4')")
    parser.add_argument("--db-prefix", default="kami_bench", help="names of the databases made and dropped")
    args = parser.parse_args()
    notify_db, pgbench_db = f"{args.db_prefix}_notify", f"{args.db_prefix}_pgbench"
    pgbench_init(pgbench_db)
    print(f"machine: {os.cpu_count()} cores · keys {args.keys} · {args.seconds}s per run · "
          f"kami serve {args.serve_args}")
    for clients in args.clients:
        psql(f"DROP DATABASE IF EXISTS {notify_db}")
        psql(f"CREATE DATABASE {notify_db}")
        env = base_env(notify_db)
        jobs = setup_shop(env, args.keys, args.keys)
        port = free_port()
        server = subprocess.Popen([sys.executable, "-m", "kami", "serve", "--no-worker", "--port", str(port),
                                   *args.serve_args.split()], env=env, cwd=REPO, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL)
        try:
            for _ in range(150):
                try:
                    httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
                    break
                except httpx.HTTPError:
                    time.sleep(0.2)
            n, lat = asyncio.run(send_all(f"http://127.0.0.1:{port}/pay/sandbox/notify", jobs, clients, args.seconds))
        finally:
            server.terminate()
            server.wait()
        wall, lat = lat[-1], sorted(lat[:-1])
        rate = n / wall
        tps = pgbench(clients, args.seconds, pgbench_db)
        print(f"{clients:>3} senders: {rate:8.0f} notifications/s  p50 {statistics.median(lat) * 1000:6.1f} ms  "
              f"p99 {lat[int(len(lat) * 0.99) - 1] * 1000:7.1f} ms | pgbench -N {tps:8.0f} tps | ratio {rate / tps:.3f}x",
              flush=True)
    psql(f"DROP DATABASE IF EXISTS {notify_db}")
    psql(f"DROP DATABASE IF EXISTS {pgbench_db}")


if __name__ == "__main__":
    main()
