"""The notify path in one process, one thread, on PostgreSQL: Python CPU, wall time, SQL
statements and commits per notification, through `kami.wsgi.application` as a WSGI server calls
it (no HTTP, no load generator: the figure the machine's other load disturbs least).

    .venv/bin/python bench/notify_inprocess.py [--notifications 500] [--db kami_bench_inprocess] [--profile 25]

KAMI_CONFIRM_SQL=0 in the environment measures the ORM path alone (the set-based statement off).

Needs a local PostgreSQL (postgres@127.0.0.1:5432, trust auth). Creates and drops its database.
Prints figures; asserts nothing.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from notify_throughput import REPO, base_env, psql, setup_shop  # noqa: E402

MEASURE = r'''
import io, json, sys, time, django
django.setup()
from django.db import connection
from django.test.utils import CaptureQueriesContext
from tests.sandbox_play import wsgi_post
jobs = json.load(sys.stdin)

def post(body, sig):
    status, _, out = wsgi_post("/pay/sandbox/notify", body.encode(), x_sandbox_signature=sig)
    assert status == 200, (status, out[:200])

def transactions(sql):
    """Commits: each COMMIT, and each write made in autocommit outside BEGIN … COMMIT."""
    count, open_ = 0, False
    for s in (s.upper() for s in sql):
        if s.startswith("BEGIN"):
            open_ = True
        elif s.startswith(("COMMIT", "ROLLBACK")):
            count, open_ = count + s.startswith("COMMIT"), False
        elif not open_ and s.startswith(("INSERT", "UPDATE", "DELETE")):
            count += 1
    return count

for _, body, sig in jobs[:20]:  # warm up: imports, connection, caches
    post(body, sig)
with CaptureQueriesContext(connection) as queries:
    post(*jobs[20][1:])
sql = [q["sql"] for q in queries.captured_queries]
rest = jobs[21:]
profile = None
if PROFILE:
    import cProfile
    profile = cProfile.Profile()
    profile.enable()
cpu, wall = time.process_time(), time.perf_counter()
for _, body, sig in rest:
    post(body, sig)
cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
if profile is not None:
    import pstats
    profile.disable()
    pstats.Stats(profile, stream=sys.stderr).sort_stats("tottime").print_stats(PROFILE)
print(json.dumps({"n": len(rest), "cpu_ms": cpu * 1000 / len(rest), "wall_ms": wall * 1000 / len(rest),
                  "statements": len([s for s in sql if not s.upper().startswith(("BEGIN", "COMMIT"))]),
                  "transactions": transactions(sql)}))

'''


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--notifications", type=int, default=500)
    parser.add_argument("--db", default="kami_bench_inprocess")
    parser.add_argument("--profile", type=int, default=0, metavar="N",
                        help="also print the N functions with the most own time (cProfile; slows the run)")
    args = parser.parse_args()
    psql(f"DROP DATABASE IF EXISTS {args.db}")
    psql(f"CREATE DATABASE {args.db}")
    env = base_env(args.db)
    jobs = setup_shop(env, args.notifications + 21, args.notifications + 21)
    done = subprocess.run([sys.executable, "-c", f"PROFILE = {args.profile}\n" + MEASURE], input=json.dumps(jobs), env=env, cwd=REPO,
                          capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(done.stderr[-3000:])
    r = json.loads(done.stdout.strip().splitlines()[-1])
    if args.profile:
        print(done.stderr)
    print(f"machine: {os.cpu_count()} cores (shared) · {r['n']} notifications, one thread, in process")
    print(f"per notification: {r['cpu_ms']:.2f} ms Python CPU · {r['wall_ms']:.2f} ms wall · "
          f"{r['statements']} SQL statements (BEGIN/COMMIT not counted) · {r['transactions']} commits")
    psql(f"DROP DATABASE IF EXISTS {args.db}")


if __name__ == "__main__":
    main()
