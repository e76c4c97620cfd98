"""Storefront pages per second with the demo catalog, against a static file served by the same
server (`kami serve` as it runs by default, the file through WhiteNoise) in the same run, by the same
load generator.

    .venv/bin/python bench/pages_throughput.py [--seconds 8] [--clients 16] [--loader wrk|python] \
        [--tree /tmp/kami-before --tree .]

The load generator: `wrk` (C; Debian's `wrk` package), so the figure is the server's, not a
Python client's on the same cores; `python` (httpx, asyncio) when wrk is not installed. Each page
is measured twice: with no cookie, every request a buyer's first visit (Django draws a new CSRF
secret and sets its cookie), then as a returning buyer, every request sending the `csrftoken`
cookie an earlier page set, as a browser does (the secret is kept; only the token's mask is
new). Neither sends a session cookie: both take the lean middleware path of kami/api/lean.py.
Every page is fetched once first and must answer 200. Pages are served warm: the first request draws
the page and fills the storefront cache (kami/storefront/fragments.py), the rest are hits with
their queries (docs/performance.md). `--tree DIR`, repeated: serve from each checkout in turn
(e.g. a `git archive` of the commit before), each against its own static baseline, in one run.

Uses a throwaway data dir and SQLite (the embedded default a newcomer gets). Prints figures;
asserts nothing.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
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

WRK_SCRIPT = """
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("KAMI-WRK %d %d %d %d %d\\n", summary.requests, summary.duration,
           latency:percentile(50), latency:percentile(99), e.connect + e.read + e.write + e.status + e.timeout))
end
"""


def hammer_wrk(url: str, clients: int, seconds: float, cookie: str = "") -> tuple[float, float, float]:
    """wrk, closed loop, each request with `cookie` (a Cookie header) when given: (requests/s, p50 s, p99 s)."""
    threads = min(clients, os.cpu_count() or 1)
    with tempfile.TemporaryDirectory(prefix="kami-wrk-") as tmp:
        script = Path(tmp, "pages.lua")
        script.write_text(WRK_SCRIPT)
        done = subprocess.run(["wrk", "-t", str(threads), "-c", str(clients), "-d", f"{seconds:.0f}s", "--timeout", "30s",
                               "-s", str(script), *(["-H", f"Cookie: {cookie}"] if cookie else []), url],
                              capture_output=True, text=True)
    found = re.search(r"^KAMI-WRK (\d+) (\d+) (\d+) (\d+) (\d+)$", done.stdout, re.M)
    if found is None:
        raise SystemExit(f"wrk said:\n{done.stdout}{done.stderr}")
    n, wall_us, p50, p99, bad = (int(g) for g in found.groups())
    if bad:
        raise SystemExit(f"{url}: {bad} requests failed or answered another status than 2xx/3xx")
    return n / (wall_us / 1e6), p50 / 1e6, p99 / 1e6


def hammer_python(url: str, clients: int, seconds: float, cookie: str = "") -> tuple[float, float, float]:
    """httpx, closed loop, each request with `cookie` when given: (requests/s, p50 s, p99 s)."""
    rate, lat = asyncio.run(_hammer(url, clients, seconds, cookie))
    return rate, statistics.median(lat), lat[int(len(lat) * 0.99) - 1]


async def _hammer(url: str, clients: int, seconds: float, cookie: str) -> tuple[float, list[float]]:
    latencies: list[float] = []
    stop = time.perf_counter() + seconds

    async def one(client: httpx.AsyncClient):
        while time.perf_counter() < stop:
            client.cookies.clear()  # a client keeps what Set-Cookie gave it; wrk sends only what it is told
            t0 = time.perf_counter()
            response = await client.get(url, headers={"Cookie": cookie} if cookie else None)
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
    parser.add_argument("--loader", choices=("wrk", "python"), default="wrk" if shutil.which("wrk") else "python")
    parser.add_argument("--tree", type=Path, action="append", help="serve from this checkout (repeat to compare)")
    args = parser.parse_args()
    print(f"machine: {os.cpu_count()} cores · {args.clients} clients · {args.seconds:.0f} s per page · "
          f"SQLite demo catalog · loader {args.loader}")
    for tree in args.tree or [REPO]:
        if args.tree:
            print(f"tree {tree}")
        measure(tree.resolve(), args, hammer_wrk if args.loader == "wrk" else hammer_python)


def returning_cookie(url: str) -> str:
    """The Cookie header a browser sends after its first page: the CSRF cookie that page set,
    checked to be one the server keeps (a second page with it sets the same secret again)."""
    secret = httpx.get(url, timeout=30).cookies.get("csrftoken")
    again = httpx.get(url, headers={"Cookie": f"csrftoken={secret}"}, timeout=30)
    if not secret or again.status_code != 200 or again.cookies.get("csrftoken") != secret:
        raise SystemExit(f"{url}: no CSRF cookie a returning buyer could keep ({secret!r}, then {again.cookies.get('csrftoken')!r})")
    return f"csrftoken={secret}"


def measure(tree: Path, args: argparse.Namespace, hammer) -> None:
    env = {**os.environ, "KAMI_DATA_DIR": tempfile.mkdtemp(prefix="kami-bench-pages-"), "KAMI_LOG_LEVEL": "WARNING"}
    env.pop("DATABASE_URL", None)
    subprocess.run([sys.executable, "-m", "kami", "demo", "--no-serve"], env=env, cwd=tree, check=True,
                   stdout=subprocess.DEVNULL)
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "kami", "serve", "--no-worker", "--port", str(port)],
                              env=env, cwd=tree, stdout=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    static = "/static/storefront/kami.css"
    try:
        for _ in range(100):
            try:
                httpx.get(f"{base}/healthz", timeout=1)
                break
            except httpx.HTTPError:
                time.sleep(0.2)
        for page in (static, *args.pages):
            if (status := httpx.get(base + page, timeout=30).status_code) != 200:
                raise SystemExit(f"{page} answered {status}")
        cookie = returning_cookie(base + args.pages[0])
        static_rate, p50, p99 = hammer(base + static, args.clients, args.seconds)
        print(f"{'static kami.css':<30} {static_rate:8.0f} req/s  p50 {p50 * 1000:6.1f} ms  p99 {p99 * 1000:6.1f} ms  (baseline)")
        for label, sent in (("first visit", ""), ("returning buyer", cookie)):
            for page in args.pages:
                rate, p50, p99 = hammer(base + page, args.clients, args.seconds, sent)
                print(f"{page + ' ' + label:<30} {rate:8.0f} req/s  p50 {p50 * 1000:6.1f} ms  p99 {p99 * 1000:6.1f} ms  "
                      f"ratio {rate / static_rate:.2f}x")
    finally:
        server.terminate()
        server.wait()
        shutil.rmtree(env["KAMI_DATA_DIR"], ignore_errors=True)  # its database, data key and mail files


if __name__ == "__main__":
    main()
