"""WSGI servers side by side on the notify path and a page, on PostgreSQL, same run, same code.

    .venv/bin/python bench/servers.py [--keys 12000] [--seconds 8] [--clients 16] [--processes 2]

Each server serves `kami.wsgi:application` (the lean notify dispatch included) with the same
number of processes (default: one per core) and threads per process (4: one database connection
each). Notify: correctly signed sandbox notifications for distinct pending orders of one hot
product, as bench/notify_throughput.py sends them. Page: the home page `/`. Baseline: `pgbench -N`
with the same client count, run last. Prints figures and ratios; asserts nothing.
Needs granian and gunicorn installed (`pip install granian gunicorn`); a server missing is skipped.
"""
from __future__ import annotations

import argparse
import asyncio
import importlib.util
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from notify_throughput import REPO, base_env, free_port, pgbench, pgbench_init, psql, send_all, setup_shop  # noqa: E402
from pages_throughput import hammer_python, hammer_wrk  # noqa: E402


def commands(port: int, processes: int, threads: int) -> dict[str, list[str]]:
    venv = Path(sys.executable).parent
    return {
        "waitress (1 process)": [sys.executable, "-m", "kami", "serve", "--no-worker", "--server", "waitress",
                                 "--port", str(port), "--threads", str(threads), "--processes", "1"],
        f"waitress ×{processes} (kami/cli/prefork.py)": [sys.executable, "-m", "kami", "serve", "--no-worker",
                                                         "--port", str(port), "--threads", str(threads),
                                                         "--processes", str(processes)],
        f"gunicorn gthread ×{processes}": [str(venv / "gunicorn"), "kami.wsgi:application", "-b", f"127.0.0.1:{port}",
                                           "-w", str(processes), "--threads", str(threads), "-k", "gthread",
                                           "--log-level", "warning"],
        "granian wsgi ×1": [str(venv / "granian"), "--interface", "wsgi", "--host", "127.0.0.1", "--port", str(port),
                            "--workers", "1", "--blocking-threads", str(threads), "--no-ws", "--log-level", "warning",
                            "kami.wsgi:application"],
        f"granian wsgi ×{processes}": [str(venv / "granian"), "--interface", "wsgi", "--host", "127.0.0.1",
                                       "--port", str(port), "--workers", str(processes), "--blocking-threads",
                                       str(threads), "--no-ws", "--log-level", "warning", "kami.wsgi:application"],
    }


def wait_up(port: int) -> None:
    for _ in range(150):
        try:
            httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
            return
        except httpx.HTTPError:
            time.sleep(0.2)
    raise SystemExit(f"server on {port} did not come up")


def line(name: str, n: int, lat: list[float], baseline: float) -> str:
    wall, lat = lat[-1], sorted(lat[:-1])
    rate = n / wall
    return (f"{name:<28} {rate:8.0f}/s  p50 {statistics.median(lat) * 1000:6.1f} ms  "
            f"p99 {lat[int(len(lat) * 0.99) - 1] * 1000:7.1f} ms  ratio {rate / baseline:.3f}x")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--keys", type=int, default=12000)
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--processes", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--db", default="kami_bench_servers")
    parser.add_argument("--reverse", action="store_true", help="run the servers in the opposite order (load drifts)")
    args = parser.parse_args()
    psql(f"DROP DATABASE IF EXISTS {args.db}")
    psql(f"CREATE DATABASE {args.db}")
    env = base_env(args.db)
    jobs = setup_shop(env, args.keys, args.keys)
    runs = []
    names = list(commands(0, args.processes, args.threads).items())
    for name, cmd in reversed(names) if args.reverse else names:
        if not (cmd[0] == sys.executable or shutil.which(cmd[0])) or \
                (cmd[0] == sys.executable and not importlib.util.find_spec("waitress")):
            print(f"{name}: not installed, skipped")
            continue
        port = free_port()
        server = subprocess.Popen(commands(port, args.processes, args.threads)[name], env=env, cwd=REPO,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_up(port)
            share, jobs = jobs[: args.keys // 5], jobs[args.keys // 5:]
            notify = asyncio.run(send_all(f"http://127.0.0.1:{port}/pay/sandbox/notify", share, args.clients, args.seconds))
            hammer = hammer_wrk if shutil.which("wrk") else hammer_python  # (requests/s, p50 s, p99 s)
            static = hammer(f"http://127.0.0.1:{port}/static/storefront/kami.css", args.clients, args.seconds)
            page = hammer(f"http://127.0.0.1:{port}/", args.clients, args.seconds)
        finally:
            server.terminate()
            server.wait()
        runs.append((name, notify, static, page))
    pgbench_init(f"{args.db}_pgbench")
    tps = pgbench(args.clients, args.seconds, f"{args.db}_pgbench")
    print(f"machine: {os.cpu_count()} cores (shared) · {args.clients} clients · {args.seconds}s per run · "
          f"{args.processes} processes × {args.threads} threads · pgbench -N {tps:.0f} tps")
    for name, notify, (static_rate, _, _), (page_rate, page_p50, _) in runs:
        print(line(f"{name} notify", *notify, tps) + "  (ratio to pgbench -N)")
        print(f"{name + ' home page':<28} {page_rate:8.0f}/s  p50 {page_p50 * 1000:6.1f} ms  "
              f"ratio {page_rate / static_rate:.3f}x  (to a static file from the same server: {static_rate:.0f}/s)")
    psql(f"DROP DATABASE IF EXISTS {args.db}")
    psql(f"DROP DATABASE IF EXISTS {args.db}_pgbench")


if __name__ == "__main__":
    main()
