"""Worker heartbeats (kami/delivery/heartbeats.py) as a merchant meets them: a real `kami worker`
process on a demo shop makes `kami doctor` pass and shows in `/metrics`; killed with SIGKILL, it
makes the doctor fail, naming it and its last-seen age, once KAMI_WORKER_LATE_SECONDS pass;
stopped cleanly, its row says so at once. Then the rules themselves, in-process, on every engine."""
from __future__ import annotations

import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from django.test import override_settings
from prometheus_client.parser import text_string_to_metric_families

from kami.core import clock
from kami.delivery.heartbeats import Heartbeat, heartbeat_start, heartbeats_prune, workers_seen
from kami.delivery.models import OutboxMessage, WorkerHeartbeat
from kami.ops.doctor import FAIL, OK, WARN, worker_check
from kami.ops.metrics import workers_by_heartbeat
from tests.test_security_deploy import ROOT, Server, kami, kami_env, serve  # noqa: F401 — the serve fixture

FAST = {"KAMI_WORKER_HEARTBEAT_SECONDS": "0.5", "KAMI_WORKER_LATE_SECONDS": "3"}
TOKEN = "heartbeat-metrics-token-0123456789"


def rows(data_dir: Path) -> dict[str, tuple]:
    with sqlite3.connect(data_dir / "kami.sqlite3") as db:
        return {name: (seen, stopped) for name, seen, stopped in
                db.execute("SELECT name, seen_at, stopped_at FROM delivery_workerheartbeat")}


def wait_for(predicate, *, timeout: float = 60, what: str = ""):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = predicate()
        if found:
            return found
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def start_worker(tmp_path):
    started: list[subprocess.Popen] = []

    def start(data_dir: Path, *args: str) -> subprocess.Popen:
        log = open(tmp_path / f"worker-{len(started)}.log", "wb")
        proc = subprocess.Popen([sys.executable, "-m", "kami", "worker", *args], cwd=ROOT,
                                env=kami_env(data_dir, **FAST), stdout=log, stderr=subprocess.STDOUT)
        started.append(proc)
        return proc

    yield start
    for proc in started:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=20)


def scrape(server: Server) -> dict[tuple[str, tuple], float]:
    response = httpx.get(f"{server.base}/metrics", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=20)
    assert response.status_code == 200, response.text[:500]
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(response.text) for s in family.samples}


def worker_line(done) -> str:
    return next(line for line in done.stdout.splitlines() if line.split(":")[0].endswith("worker"))


@pytest.mark.sqlite_only
@pytest.mark.slow
def test_a_worker_process_is_seen_then_missed_after_sigkill(demo_shop, start_worker, serve):
    # given a worker process running on the shop, and the web (no worker of its own) serving /metrics
    worker = start_worker(demo_shop)
    name = f"{socket.gethostname()}:{worker.pid}"
    wait_for(lambda: name in rows(demo_shop), what="the worker's heartbeat row")
    web = serve(demo_shop, "--no-worker", KAMI_METRICS_TOKEN=TOKEN, **FAST)
    # when the doctor runs
    done = kami(demo_shop, "doctor", **FAST)
    # then the worker check passes, counting it
    assert worker_line(done).startswith("ok    worker: 1 running, last seen "), done.stdout
    assert "FAIL" not in done.stdout and done.returncode == 0, done.stdout
    # and /metrics shows it running, with a fresh heartbeat
    samples = scrape(web)
    assert samples[("kami_workers_running", ())] == 1
    assert samples[("kami_worker_last_seen_seconds", (("worker", name),))] < 3
    # when it is killed, with no chance to say so, and the threshold passes
    worker.send_signal(signal.SIGKILL)
    worker.wait(timeout=10)
    time.sleep(3.5)
    done = kami(demo_shop, "doctor", **FAST)
    # then the doctor fails on the worker, naming it and how long ago it was seen
    assert done.returncode == 1, done.stdout
    line = worker_line(done)
    assert line.startswith(f"FAIL  worker: no worker running: {name} last seen "), line
    age = int(line.split(" last seen ")[1].split("s ago")[0])
    assert age >= 3
    assert "killed, or stuck" in line and "start `kami worker`" in line
    # and /metrics counts no worker running, the dead one still listed with its growing age
    samples = scrape(web)
    assert samples[("kami_workers_running", ())] == 0
    assert samples[("kami_worker_last_seen_seconds", (("worker", name),))] >= 3


@pytest.mark.sqlite_only
@pytest.mark.slow
@pytest.mark.parametrize("signals", [1, 2])
def test_a_clean_stop_is_recorded_at_once(demo_shop, start_worker, signals):
    # given a worker with a name of its own, running
    worker = start_worker(demo_shop, "--worker-id", "vps-1-worker")
    wait_for(lambda: "vps-1-worker" in rows(demo_shop), what="the worker's heartbeat row")
    # when it is stopped as systemd stops it (twice at once: systemd's SIGTERM to the group, then
    # `kami serve` passing it on to its worker: one request to stop, not "stop at once")
    for _ in range(signals):
        worker.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=30) == 0
    # then its row says it stopped, and the doctor fails at once (no threshold to wait for)
    assert rows(demo_shop)["vps-1-worker"][1] is not None
    done = kami(demo_shop, "doctor", **FAST)
    assert done.returncode == 1
    assert worker_line(done).startswith("FAIL  worker: no worker running: vps-1-worker stopped cleanly ")


@pytest.mark.sqlite_only
@pytest.mark.slow
def test_kami_serve_s_own_worker_beats_too(demo_shop):
    # when `kami serve` runs with its built-in worker, then stops (SIGTERM, as systemd does)
    web = Server(demo_shop, **FAST)
    try:
        wait_for(lambda: rows(demo_shop), what="the built-in worker's heartbeat")
        assert kami(demo_shop, "doctor", **FAST).returncode == 0
    finally:
        web.stop()
    # then its worker's row is marked stopped
    ((name, (_, stopped)),) = rows(demo_shop).items()
    assert stopped is not None, f"{name}: {web.log_path.read_text(errors='replace')[-3000:]}"


# In-process: the rules, on every engine.

@pytest.mark.django_db(transaction=True)
def test_the_doctor_warns_on_a_new_shop_and_fails_on_one_with_orders_and_no_worker():
    # given no worker ever, no order: a warning
    assert worker_check().status == WARN
    # when an order's delivery exists (sent, so nothing is overdue) and still no worker ever ran
    now = clock.now()
    OutboxMessage.objects.create(kind="admin_alert", channel="log", target="-", dedupe_key="hb-1",
                                 status=OutboxMessage.Status.SENT, next_attempt_at=now, created_at=now)
    check = worker_check()
    # then it fails
    assert check.status == FAIL and "no worker has ever run" in check.detail


@pytest.mark.django_db(transaction=True)
def test_beats_keep_a_worker_running_and_a_stop_ends_it():
    with override_settings(KAMI_WORKER_HEARTBEAT_SECONDS=0, KAMI_WORKER_LATE_SECONDS=60):
        beat = Heartbeat("w-a")
        beat.start()
        row = WorkerHeartbeat.objects.get(name="w-a")
        assert row.pid == os.getpid() and row.stopped_at is None
        # a beat moves seen_at on
        WorkerHeartbeat.objects.filter(name="w-a").update(seen_at=clock.now() - timedelta(seconds=30))
        beat.beat()
        assert (clock.now() - WorkerHeartbeat.objects.get(name="w-a").seen_at).total_seconds() < 5
        check = worker_check()
        assert check.status == OK and check.detail.startswith("1 running, last seen 0s ago"), check.detail
        assert workers_by_heartbeat().running == 1
        # a stop is recorded; the doctor names the stopped worker
        beat.stop()
        assert WorkerHeartbeat.objects.get(name="w-a").stopped_at is not None
        assert workers_by_heartbeat().running == 0 and workers_by_heartbeat().last_seen_seconds == {}
        check = worker_check()
        assert check.status == FAIL and "w-a stopped cleanly" in check.detail


@pytest.mark.django_db(transaction=True)
def test_silent_rows_are_pruned_and_a_pruned_worker_comes_back_on_its_next_beat():
    with override_settings(KAMI_WORKER_HEARTBEAT_SECONDS=0, KAMI_WORKER_HEARTBEAT_KEEP_DAYS=7):
        old = clock.now() - timedelta(days=8)
        heartbeat_start("long-gone")
        WorkerHeartbeat.objects.filter(name="long-gone").update(seen_at=old, started_at=old)
        beat = Heartbeat("paused")
        beat.start()  # a starting worker prunes what is silent for more than the keep days
        assert sorted(WorkerHeartbeat.objects.values_list("name", flat=True)) == ["paused"]
        # when its own row goes (pruned while it was paused), its next beat registers it again
        WorkerHeartbeat.objects.all().delete()
        beat.beat()
        assert [w.name for w in workers_seen()] == ["paused"]
        assert heartbeats_prune() == 0
