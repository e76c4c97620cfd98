"""Callback → key email accepted by a local SMTP server, on PostgreSQL, through `kami serve` and
its worker (woken by LISTEN/NOTIFY, polling every KAMI_WORKER_POLL_SECONDS behind it).

    .venv/bin/python bench/delivery_latency.py [--orders 1000] [--clients 16] [--trickle 20] \
        [--workers 0] [--smtp-delay-ms 0] [--db-prefix kami_bench]

Two phases on one shop: a trickle (one notification at a time, `--trickle` of them, 0.5 s apart:
the worker is idle and waiting each time, so this is the wake-up cost), then a flash sale
(`--orders` notifications for one hot product from `--clients` concurrent senders). For each
order: the time from sending its notification to its email being accepted by the SMTP server
(aiosmtpd in this process). `--workers N` adds N `kami worker` processes beside serve's own. `--smtp-delay-ms`
makes the SMTP server answer like a remote relay (a provider's DATA answer takes 50–500 ms), which is
where a worker that sends one email at a time falls behind.
The baseline is the sale itself: emails out per second against notifications in per second, same
run (1.00× means the worker kept up). Needs a local PostgreSQL (postgres@127.0.0.1:5432, trust
auth); makes and drops its database. Prints figures; asserts nothing.
"""
from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
from aiosmtpd.controller import Controller

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
from notify_throughput import REPO, base_env, psql, setup_shop  # noqa: E402

sys.path.insert(0, str(REPO))
from tests.ports import free_port  # noqa: E402


class Arrivals:
    """aiosmtpd handler: when each recipient's first message was accepted (perf_counter)."""

    def __init__(self, delay: float = 0.0):
        self.delay = delay  # a relay's answer time to DATA (a remote provider: 50–500 ms)
        self.at: dict[str, float] = {}
        self.count = 0
        self.lock = threading.Lock()

    async def handle_DATA(self, server, session, envelope):
        if self.delay:
            await asyncio.sleep(self.delay)
        now = time.perf_counter()
        with self.lock:
            self.count += 1
            for rcpt in envelope.rcpt_tos:
                self.at.setdefault(rcpt, now)
        return "250 Message accepted for delivery"


async def notify(client: httpx.AsyncClient, url: str, job: list) -> float:
    _, body, sig = job
    sent = time.perf_counter()
    r = await client.post(url, content=body, headers={"Content-Type": "application/json", "X-Sandbox-Signature": sig})
    if r.status_code != 200:
        raise SystemExit(f"notify answered {r.status_code}: {r.text[:200]}")
    return sent


async def flash_sale(url: str, jobs: list[tuple[int, list]], clients: int) -> dict[int, float]:
    sent: dict[int, float] = {}
    queue = list(reversed(jobs))

    async def sender(client):
        while queue:
            i, job = queue.pop()
            sent[i] = await notify(client, url, job)

    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(limits=limits, timeout=60) as client:
        await asyncio.gather(*(sender(client) for _ in range(clients)))
    return sent


async def trickle(url: str, jobs: list[tuple[int, list]], arrivals: Arrivals) -> dict[int, float]:
    sent: dict[int, float] = {}
    async with httpx.AsyncClient(timeout=60) as client:
        for i, job in jobs:
            sent[i] = await notify(client, url, job)
            deadline = time.perf_counter() + 30
            while f"b{i}@x.test" not in arrivals.at and time.perf_counter() < deadline:
                await asyncio.sleep(0.005)
            await asyncio.sleep(0.5)
    return sent


def report(name: str, sent: dict[int, float], arrivals: Arrivals, extra: str = "") -> None:
    lat = sorted(arrivals.at[f"b{i}@x.test"] - t for i, t in sent.items() if f"b{i}@x.test" in arrivals.at)
    missing = len(sent) - len(lat)
    if not lat:
        print(f"{name}: no email arrived")
        return
    p99 = lat[max(int(len(lat) * 0.99) - 1, 0)]
    print(f"{name}: {len(lat)} emails  callback → email accepted  p50 {statistics.median(lat) * 1000:7.0f} ms  "
          f"p99 {p99 * 1000:7.0f} ms  max {lat[-1] * 1000:7.0f} ms{'  missing ' + str(missing) if missing else ''}"
          f"{extra}", flush=True)


def wait_for(arrivals: Arrivals, emails: int, seconds: float) -> None:
    deadline = time.perf_counter() + seconds
    while len(arrivals.at) < emails and time.perf_counter() < deadline:
        time.sleep(0.05)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--orders", type=int, default=1000)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--trickle", type=int, default=20)
    parser.add_argument("--workers", type=int, default=0, help="extra `kami worker` processes")
    parser.add_argument("--smtp-delay-ms", type=float, default=0,
                        help="the SMTP server answers each message's DATA after this long, as a remote relay does")
    parser.add_argument("--db-prefix", default="kami_bench")
    args = parser.parse_args()
    db = f"{args.db_prefix}_delivery"
    psql(f"DROP DATABASE IF EXISTS {db}")
    psql(f"CREATE DATABASE {db}")
    arrivals, smtp_port, port = Arrivals(args.smtp_delay_ms / 1000), free_port(), free_port()
    smtp = Controller(arrivals, hostname="127.0.0.1", port=smtp_port)
    smtp.start()
    env = {**base_env(db), "EMAIL_URL": f"smtp://127.0.0.1:{smtp_port}", "KAMI_FROM_EMAIL": "shop@x.test",
           "KAMI_ADMIN_EMAIL": "", "KAMI_BASE_URL": f"http://127.0.0.1:{port}"}
    total = args.trickle + args.orders
    jobs = list(enumerate(setup_shop(env, total, total)))
    procs = [subprocess.Popen([sys.executable, "-m", "kami", "serve", "--port", str(port)], env=env, cwd=REPO,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    procs += [subprocess.Popen([sys.executable, "-m", "kami", "worker"], env=env, cwd=REPO, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL) for _ in range(args.workers)]
    url = f"http://127.0.0.1:{port}/pay/sandbox/notify"
    try:
        for _ in range(600):
            try:
                httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
                break
            except httpx.HTTPError:
                time.sleep(0.2)
        time.sleep(5)  # the workers' first pass and sweep
        print(f"kami serve + its worker{f' + {args.workers} workers' if args.workers else ''}, "
              f"poll {env.get('KAMI_WORKER_POLL_SECONDS', '1')} s, PostgreSQL LISTEN/NOTIFY, "
              f"SMTP answers DATA after {args.smtp_delay_ms:.0f} ms", flush=True)
        sent = asyncio.run(trickle(url, jobs[:args.trickle], arrivals))
        report(f"trickle ({args.trickle}, one at a time)", sent, arrivals)
        started = time.perf_counter()
        sent = asyncio.run(flash_sale(url, jobs[args.trickle:], args.clients))
        notified = time.perf_counter() - started
        wait_for(arrivals, total, 300)
        drained = max(arrivals.at.values()) - started
        report(f"flash sale ({args.orders} orders, {args.clients} senders)", sent, arrivals,
               f"\n  notifications {args.orders / notified:.0f}/s over {notified:.1f} s; "
               f"last email {drained:.1f} s after the first notification ({args.orders / drained:.0f} emails/s, "
               f"{notified / drained:.2f}× the rate the notifications came in: the baseline, same run)")
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(timeout=30)
        smtp.stop()
        psql(f"DROP DATABASE IF EXISTS {db}")


if __name__ == "__main__":
    main()
