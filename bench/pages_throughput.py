"""Storefront pages per second with the demo catalog, against a static file served by the same
server (`kami serve`, waitress + WhiteNoise) in the same run.

    .venv/bin/python bench/pages_throughput.py [--seconds 8] [--clients 16]

Uses a throwaway data dir and SQLite (the embedded default a newcomer gets). Prints figures;
asserts nothing.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # the helpers tests and benchmarks share
from tests.ports import free_port  # noqa: E402



async def hammer(url: str, clients: int, seconds: float) -> tuple[float, list[float]]:
    latencies: list[float] = []
    stop = time.perf_counter() + seconds

    async def one(client: httpx.AsyncClient):
        while time.perf_counter() < stop:
            t0 = time.perf_counter()
            response = await client.get(url)
            latencies.append(time.perf_counter() - t0)
            if response.status_code != 200:
                raise SystemExit(f"{url} answered {response.status_code}")

    async with httpx.AsyncClient(limits=httpx.Limits(max_connections=clients), timeout=30) as client:
        t0 = time.perf_counter()
        await asyncio.gather(*(one(client) for _ in range(clients)))
        return len(latencies) / (time.perf_counter() - t0), sorted(latencies)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=8)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--pages", nargs="+", default=["/", "/p/steam-50"])
    args = parser.parse_args()
    env = {**os.environ, "KAMI_DATA_DIR": tempfile.mkdtemp(prefix="kami-bench-pages-"), "KAMI_LOG_LEVEL": "WARNING"}
    env.pop("DATABASE_URL", None)
    subprocess.run([sys.executable, "-m", "kami", "demo", "--no-serve"], env=env, cwd=REPO, check=True,
                   stdout=subprocess.DEVNULL)
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "kami", "serve", "--no-worker", "--port", str(port)],
                              env=env, cwd=REPO, stdout=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            try:
                httpx.get(f"{base}/healthz", timeout=1)
                break
            except httpx.HTTPError:
                time.sleep(0.2)
        print(f"machine: {os.cpu_count()} cores · {args.clients} clients · {args.seconds:.0f} s per page · SQLite demo catalog")
        static_rate, _ = asyncio.run(hammer(f"{base}/static/storefront/kami.css", args.clients, args.seconds))
        print(f"{'static kami.css':<18} {static_rate:8.0f} req/s (baseline)")
        for page in args.pages:
            rate, lat = asyncio.run(hammer(base + page, args.clients, args.seconds))
            print(f"{page:<18} {rate:8.0f} req/s  p50 {statistics.median(lat) * 1000:6.1f} ms  "
                  f"p99 {lat[int(len(lat) * 0.99) - 1] * 1000:6.1f} ms  ratio {rate / static_rate:.2f}x")
    finally:
        server.terminate()
        server.wait()


if __name__ == "__main__":
    main()
