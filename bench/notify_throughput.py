"""Notifications confirmed per second on PostgreSQL (or MariaDB), through the real HTTP server
(`kami serve`), against `pgbench -N` (or `sysbench oltp_write_only`) with the same client count in
the same run.

    .venv/bin/python bench/notify_throughput.py [--engine postgres|mariadb] [--keys 20000] [--seconds 10] \
        [--clients 16 64] [--loader wrk|python] [--serve-args '--threads 4'] \
        [--variant 'LABEL;SERVE ARGS;ENV=VALUE …' …] [--rounds 1] [--py-spy DIR] [--db-prefix kami_bench] [--reuse]

The shop (one hot product, `--keys` keys, as many pending orders) is made once into a template
database; every measured run starts from a fresh copy of it (`CREATE DATABASE … TEMPLATE`), so
variants and rounds see the same shop, and the notifications are signed just before each run
(the sandbox refuses them after 5 minutes). `--variant` runs several servers side by side in one
run — e.g. `--variant 'before;--threads 4;KAMI_BENCH_TREE=/tmp/kami-before' --variant 'after;'`
(KAMI_BENCH_TREE: serve from another checkout of the same migrations, e.g. `git archive` of the
commit before; KAMI_BENCH_DB_OPTIONS: a query appended to the run's DATABASE_URL, e.g.
`prepare_threshold=5`) — alternated
within each round (reversed every other round), each against the `pgbench -N` measured in the
same round (before and after the variants; the mean is the baseline). After each run the bench
counts orders and keys (every 200 must be a fulfilled order with one key of its own, no key sold
twice) and prints the CPU the server and the database server spent per notification during the
load (and over the whole run, start included): on this shared machine the rate of the same code
moved by up to 40 % run to run, the CPU per notification with it but the comparison in the same
round far less, so compare variants alternated in the same rounds, by both.

The load generator: `wrk` (C; Debian's `wrk` package) posting the pre-signed bodies through a Lua
script, so the figure is the server's, not a Python client's on the same two cores; `python`
(httpx, asyncio) when wrk is not installed. `--py-spy DIR` records each run's server with
`py-spy record --idle` (collapsed stacks, one file per run) for a look at where the time goes;
`KAMI_BENCH_SPY=--gil` records only the thread holding the GIL instead: where the Python CPU goes.

`--engine mariadb`: the same against a local MariaDB (root@127.0.0.1:3306), the shop copied per
run table by table and the baseline `sysbench oltp_write_only` (bench/notify_engines.py says how).

Needs a local PostgreSQL (postgres@127.0.0.1:5432, trust auth) and pgbench. Creates and drops
its own databases (<prefix>_notify*, <prefix>_pgbench; on MariaDB <prefix>_my_notify_tpl,
<prefix>_notify, <prefix>_sysbench). Prints figures; asserts nothing.
"""
from __future__ import annotations

import argparse
import atexit
import asyncio
import base64
import hashlib
import hmac
import json
import os
import re
import resource
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

sys.path.insert(0, str(Path(__file__).resolve().parent))
from notify_engines import ENGINES, PG, counts_check, pgbench, pgbench_init, psql  # noqa: E402,F401


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


SHOP_KEPT_MINUTES = 24 * 60


def base_env(db: str, server: str = PG) -> dict:
    data_dir = tempfile.mkdtemp(prefix="kami-bench-")
    atexit.register(shutil.rmtree, data_dir, ignore_errors=True)  # the bench's data dir goes with it
    return {**os.environ, "DATABASE_URL": f"{server}/{db}", "DJANGO_SETTINGS_MODULE": "kami.settings",
            "KAMI_DATA_DIR": data_dir, "KAMI_LOG_LEVEL": "WARNING",
            "KAMI_DATA_KEY": "kb:" + base64.b64encode(os.urandom(32)).decode(), "KAMI_SECRET_KEY": "bench",
            "KAMI_SANDBOX": "1",  # the sandbox plays the gateway: live only where asked for
            # a day, not 30 minutes: a shop kept with --reuse stays payable (past its orders' expiry
            # every notification is "paid late", answered 200 and flagged, and the counts say WRONG)
            "KAMI_ORDER_TTL_MINUTES": str(SHOP_KEPT_MINUTES)}


SETUP_TEMPLATE = """
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
made = [order_create(product=p, quantity=1, email=f"b{{i}}@x.test", gateway="sandbox")[0] for i in range({orders})]
json.dump({{"secret": gateway_get("sandbox").secrets["secret"],
           "orders": [[o.order_no, str(o.amount), o.currency] for o in made]}}, sys.stdout)
"""


def template_make(env: dict, db: str, keys: int, engine=None) -> dict:
    """The shop once, into database `db` (a template for the runs): {"secret", "orders"}."""
    engine = engine or ENGINES["postgres"]()
    engine.create(db)
    subprocess.run([sys.executable, "-m", "kami", "migrate", "-v", "0"], env=env, check=True, cwd=REPO)
    done = subprocess.run([sys.executable, "-c", SETUP_TEMPLATE.format(keys=keys, orders=keys)], env=env, check=True,
                          cwd=REPO, capture_output=True, text=True)
    engine.settle(db)
    return json.loads(done.stdout)


def jobs_signed(shop: dict) -> list[tuple[str, str, str]]:
    """Every order's notification, signed now as the sandbox gateway signs (kami/payments/gateways/sandbox.py)."""
    stamp, secret = int(time.time()), shop["secret"].encode()
    jobs = []
    for i, (order_no, amount, currency) in enumerate(shop["orders"]):
        body = json.dumps({"order_no": order_no, "trade_no": f"T{i}", "amount": amount, "currency": currency,
                           "status": "paid", "timestamp": stamp}, separators=(",", ":"))
        jobs.append((order_no, body, hmac.new(secret, body.encode(), hashlib.sha256).hexdigest()))
    return jobs


WRK_SCRIPT = r"""
-- Each thread posts its share of the pre-signed notifications (line i: body TAB signature), once each.
local n, threads = 0, {}
function setup(thread) thread:set("id", n); n = n + 1; threads[#threads + 1] = thread end
function init(args)
  bodies, sigs, bad, sample = {}, {}, 0, ""
  for line in io.lines(args[1]) do
    local tab = line:find("\t", 1, true)
    bodies[#bodies + 1], sigs[#sigs + 1] = line:sub(1, tab - 1), line:sub(tab + 1)
  end
  step, at = tonumber(args[2]), id + 1
end
function request()
  local i = math.min(at, #bodies)
  at = at + step
  return wrk.format("POST", nil, {["Content-Type"] = "application/json", ["X-Sandbox-Signature"] = sigs[i]}, bodies[i])
end
function response(status, headers, body)
  if status ~= 200 then bad = bad + 1; if sample == "" then sample = status .. " " .. body:sub(1, 200) end end
  if at > #bodies then wrk.thread:stop() end
end
function done(summary, latency, requests)
  local bad_all, sample_all = 0, ""
  for _, t in ipairs(threads) do
    bad_all = bad_all + t:get("bad")
    if sample_all == "" then sample_all = t:get("sample") end
  end
  io.write(string.format("KAMI-WRK %d %d %d %d %d %s\n", summary.requests, summary.duration,
           latency:percentile(50), latency:percentile(99), bad_all, sample_all))
end
"""


def send_wrk(url: str, jobs: list, clients: int, seconds: float) -> tuple[int, float, float, float]:
    """wrk, closed loop: (answered, wall s, p50 s, p99 s). Stops when the notifications run out."""
    threads = min(clients, os.cpu_count() or 1)
    with tempfile.TemporaryDirectory(prefix="kami-wrk-") as tmp:
        lines, script = Path(tmp, "jobs.tsv"), Path(tmp, "notify.lua")
        lines.write_text("".join(f"{body}\t{sig}\n" for _, body, sig in jobs))
        script.write_text(WRK_SCRIPT)
        done = subprocess.run(["wrk", "-t", str(threads), "-c", str(clients), "-d", f"{seconds}s", "--timeout", "30s",
                              "-s", str(script), url, "--", str(lines), str(threads)],
                             capture_output=True, text=True)
    found = re.search(r"^KAMI-WRK (\d+) (\d+) (\d+) (\d+) (\d+) ?(.*)$", done.stdout, re.M)
    if found is None:
        raise SystemExit(f"wrk said:\n{done.stdout}{done.stderr}")
    n, wall_us, p50, p99, bad = (int(found.group(g)) for g in range(1, 6))
    if bad:
        raise SystemExit(f"notify answered {bad} requests with another status than 200, e.g. {found.group(6)}")
    return n, wall_us / 1e6, p50 / 1e6, p99 / 1e6


def send_python(url: str, jobs: list, clients: int, seconds: float) -> tuple[int, float, float, float]:
    n, lat = asyncio.run(send_all(url, jobs, clients, seconds))
    wall, lat = lat[-1], sorted(lat[:-1])
    return n, wall, statistics.median(lat), lat[int(len(lat) * 0.99) - 1]


def serve_run(*, env: dict, variant: tuple[str, str, dict], template: str, db: str, jobs: list, clients: int,
              seconds: int, loader: str, py_spy: Path | None, tag: str, engine=None) -> tuple[int, float, float, float]:
    """One measured run: a fresh copy of the shop, `kami serve --no-worker` with the variant's arguments
    and environment, the load; the server stopped; the orders and keys counted."""
    engine = engine or ENGINES["postgres"]()
    label, serve_args, extra_env = variant[0], variant[1], dict(variant[2])
    engine.copy(template, db)
    database_before = db_cpu()
    port = free_port()
    options = extra_env.pop("KAMI_BENCH_DB_OPTIONS", "")  # e.g. prepare_threshold=5: appended to DATABASE_URL
    run_env = {**env, "DATABASE_URL": f"{engine.server}/{db}" + (f"?{options}" if options else ""),
               "KAMI_LOG_LEVEL": "INFO", **extra_env}  # INFO: batch sizes
    tree = run_env.pop("KAMI_BENCH_TREE", REPO)  # another checkout's code against the same shop (e.g. "before")
    log = tempfile.TemporaryFile(mode="w+")
    server = subprocess.Popen([sys.executable, "-m", "kami", "serve", "--no-worker", "--port", str(port),
                               *serve_args.split()], env=run_env, cwd=tree, stdout=subprocess.DEVNULL,
                              stderr=log, start_new_session=True)
    spy = None
    try:
        deadline = time.monotonic() + 300  # a loaded machine starts Django slowly
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                log.seek(0)
                raise SystemExit(f"kami serve ({label}) did not start:\n{log.read()[-3000:]}")
            time.sleep(0.3)
        url = f"http://127.0.0.1:{port}/pay/sandbox/notify"
        if py_spy is not None:
            spy = subprocess.Popen([shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy"), "record", *os.environ.get("KAMI_BENCH_SPY", "--idle").split(), "--subprocesses", "-r", "200", "-d", str(seconds),
                                    "-p", str(server.pid), "-f", "raw", "-o", str(py_spy / f"{tag}-{label}-{clients}.txt")],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        started, database_started = tree_cpu(server.pid), db_cpu()
        result = (send_wrk if loader == "wrk" else send_python)(url, jobs, clients, seconds)
        load_cpu, database_load = tree_cpu(server.pid) - started, db_cpu() - database_started
    finally:
        reaped = cpu_reaped()  # wrk's included: it has been waited for
        if server.poll() is None:
            os.killpg(server.pid, 15)  # the server and any processes it started
        server.wait()
        server_cpu = cpu_reaped() - reaped  # the server's whole life, its processes reaped by it
        if spy is not None:
            spy.wait()
        log.seek(0)
        for line in log:
            if "group commit:" in line:
                print(f"    {label}: {line.split('group commit:', 1)[1].strip()}", flush=True)
    time.sleep(0.5)  # the server's database sessions end: their CPU is then the postmaster's children's
    database_cpu = db_cpu() - database_before
    fulfilled = counts_check(engine, db, label, result[0])
    per = 1000 / max(result[0], 1)  # ms per notification answered 200 during the load
    print(f"    {label}: CPU per notification during the load: server {load_cpu * per:.3f} ms, database "
          f"{database_load * per:.3f} ms; over the run, start included: server {server_cpu:.1f} s, database "
          f"{database_cpu:.1f} s ({server_cpu / max(fulfilled, 1) * 1000:.2f} and "
          f"{database_cpu / max(fulfilled, 1) * 1000:.2f} ms per fulfilled order)", flush=True)
    return result


def _processes() -> list[tuple[int, str, list[str]]]:
    """(pid, command name, the fields of /proc/PID/stat after the name) of every live process."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue  # ended meanwhile
        found.append((int(pid), stat[stat.index("(") + 1:stat.rindex(")")], stat[stat.rindex(")") + 2:].split()))
    return found


def tree_cpu(pid: int) -> float:
    """User + system CPU seconds of a live process and its live descendants (the server's forked
    processes), from /proc."""
    processes = _processes()
    parent = {child: int(fields[1]) for child, _, fields in processes}
    tree = {pid}
    for child in sorted(parent):  # a descendant's parent is older: a lower pid, except after pids wrap
        if parent[child] in tree:
            tree.add(child)
    used = sum(int(fields[11]) + int(fields[12]) for child, _, fields in processes if child in tree)
    return used / os.sysconf("SC_CLK_TCK")


def db_cpu() -> float:
    """User + system CPU seconds of the local database server so far (PostgreSQL: every process
    named postgres and the sessions they reaped; MariaDB: mariadbd's threads), read from /proc: a
    figure per order that other load on the machine moves far less than the rate."""
    used = sum(sum(int(n) for n in fields[11:15])  # utime stime cutime cstime
               for _, name, fields in _processes() if name in ("postgres", "mariadbd", "mysqld"))
    return used / os.sysconf("SC_CLK_TCK")


def cpu_reaped() -> float:
    """User + system CPU seconds of this process's children waited for so far."""
    used = resource.getrusage(resource.RUSAGE_CHILDREN)
    return used.ru_utime + used.ru_stime


def variant_parse(text: str) -> tuple[str, str, dict]:
    """'LABEL;SERVE ARGS;ENV=VALUE ENV=VALUE' (the last two parts optional)."""
    label, serve_args, env = (text.split(";") + ["", ""])[:3]
    return label.strip(), serve_args.strip(), dict(item.split("=", 1) for item in env.split())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--engine", choices=tuple(ENGINES), default="postgres",
                        help="mariadb: the shop on MariaDB, against sysbench oltp_write_only (bench/notify_engines.py)")
    parser.add_argument("--keys", type=int, default=20000, help="keys and pending orders (at most one run's notifications)")
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--clients", type=int, nargs="+", default=[16, 64])
    parser.add_argument("--loader", choices=("wrk", "python"), default="wrk" if shutil.which("wrk") else "python")
    parser.add_argument("--serve-args", default="", help="passed to `kami serve --no-worker` (e.g. '--threads 4')")
    parser.add_argument("--variant", action="append", default=[],
                        help="'LABEL;SERVE ARGS;ENV=VALUE …': servers to compare in the same run (default: one, --serve-args)")
    parser.add_argument("--rounds", type=int, default=1, help="repeat the whole comparison, alternating the order")
    parser.add_argument("--py-spy", type=Path, help="record each run's server with py-spy into this directory")
    parser.add_argument("--db-prefix", default="kami_bench", help="names of the databases made and dropped")
    parser.add_argument("--reuse", action="store_true",
                        help="keep the shop's template database for the next run, and use the last one kept "
                             "(made anew once 23 hours old: its orders live a day)")
    args = parser.parse_args()
    variants = [variant_parse(v) for v in args.variant] or [("kami serve", args.serve_args, {})]
    engine = ENGINES[args.engine]()
    prefix = args.db_prefix if args.engine == "postgres" else f"{args.db_prefix}_my"  # a template of each engine
    template, notify_db = f"{prefix}_notify_tpl", f"{args.db_prefix}_notify"
    baseline_db = f"{args.db_prefix}_{'pgbench' if args.engine == 'postgres' else 'sysbench'}"
    if args.py_spy:
        args.py_spy.mkdir(parents=True, exist_ok=True)
    env = base_env(template, engine.server)
    print(f"machine: {os.cpu_count()} cores · load average {load()} · {engine.label} · keys {args.keys} · "
          f"{args.seconds}s per run · loader {args.loader}", flush=True)
    t0 = time.perf_counter()
    saved = Path(tempfile.gettempdir(), f"{template}.json")  # --reuse: the shop of an earlier run
    kept = json.loads(saved.read_text()) if args.reuse and saved.exists() else {}
    if time.time() - kept.get("made_at", 0) < (SHOP_KEPT_MINUTES - 60) * 60:  # its orders still payable
        shop = kept
        env["KAMI_DATA_KEY"] = shop["data_key"]  # the gateway's secret is sealed with it
    else:
        shop = {**template_make(env, template, args.keys, engine), "data_key": env["KAMI_DATA_KEY"],
                "made_at": time.time()}
        saved.write_text(json.dumps(shop))
    engine.baseline_init(baseline_db)
    print(f"shop made in {time.perf_counter() - t0:.0f} s", flush=True)
    try:
        for round_ in range(args.rounds):
            for clients in args.clients:
                order = variants if round_ % 2 == 0 else variants[::-1]
                tps = [engine.baseline(clients, args.seconds, baseline_db)]
                results = {}
                for variant in order:
                    t1 = time.perf_counter()
                    results[variant[0]] = serve_run(env=env, variant=variant, template=template, db=notify_db,
                                                    jobs=jobs_signed(shop), clients=clients, seconds=args.seconds,
                                                    loader=args.loader, py_spy=args.py_spy, tag=f"r{round_}",
                                                    engine=engine)
                    print(f"    {variant[0]}: run (shop copied, server started, load, counts) in "
                          f"{time.perf_counter() - t1:.1f} s", flush=True)
                tps.append(engine.baseline(clients, args.seconds, baseline_db))
                base = statistics.mean(tps)
                print(f"round {round_ + 1} · {clients} senders · {engine.baseline_label} {tps[0]:.0f} / {tps[1]:.0f} tps"
                      f" · load average {load()}", flush=True)
                for label, _, _ in variants:
                    n, wall, p50, p99 = results[label]
                    print(f"  {label:<24} {n / wall:7.0f} notifications/s  p50 {p50 * 1000:6.1f} ms  "
                          f"p99 {p99 * 1000:7.1f} ms  ratio {n / wall / base:.3f}x", flush=True)
    finally:
        for db in (notify_db, baseline_db) if args.reuse else (notify_db, template, baseline_db):
            engine.drop(db)
        if not args.reuse:
            saved.unlink(missing_ok=True)  # its template is gone: a later --reuse makes a new shop


def load() -> str:
    """The load averages over 1, 5 and 15 minutes, as `uptime` prints them: the machine is shared."""
    return " ".join(f"{v:.2f}" for v in os.getloadavg())


if __name__ == "__main__":
    main()
