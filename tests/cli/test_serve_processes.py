"""`kami serve` with several server processes (kami/cli/prefork.py): they share one socket and
one cache, a dead one is replaced, and none outlives `kami serve` — not even a SIGKILLed one.
On PostgreSQL and MariaDB this is the default (one process per core); the fault tests
(tests/faults/test_serve_killed.py, test_scale_out.py) run it there under load."""
from __future__ import annotations

import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.test_security_deploy import data_dir, kami_env, serve, template  # noqa: F401 (fixtures)

pytestmark = [pytest.mark.sqlite_only, pytest.mark.slow]


def children(pid: int) -> list[int]:
    return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def server_processes(serve_pid: int) -> list[int]:
    """serve's children: its server processes, as every test here runs serve with --no-worker."""
    return children(serve_pid)


def connections_held(pid: int, port: int) -> int:
    """Established TCP connections on `port` that process `pid` holds (Linux /proc)."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except FileNotFoundError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    held = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == "01" and fields[9] in inodes:
                held += 1
    return held


def wait_until(check, seconds: float = 15):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if result := check():
            return result
        time.sleep(0.1)
    return check()


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    status = Path(f"/proc/{pid}/stat").read_text().split()[2] if Path(f"/proc/{pid}/stat").exists() else "X"
    return status == "Z"


def forged_notification(client: httpx.Client, base: str) -> int:
    return client.post(f"{base}/pay/sandbox/notify", content=b'{"order_no": "K1"}', timeout=20,
                       headers={"Content-Type": "application/json", "X-Sandbox-Signature": "00"}).status_code


def test_two_processes_serve_one_port_and_share_their_rate_limits(data_dir, serve):  # noqa: F811
    # given two server processes, and forged notifications stored for at most 10 per sender
    server = serve(data_dir, "--no-worker", "--processes", "2", KAMI_SANDBOX="1", KAMI_NOTIFY_REJECTED_LIMIT="10")
    workers = wait_until(lambda: len(server_processes(server.proc.pid)) == 2 and server_processes(server.proc.pid))
    assert len(workers) == 2, server.output()
    # when at least 20 connections are opened and kept, until each process holds some (the kernel
    # hands a new connection to whichever process accepts first: one that is still starting its
    # loop takes none for a while), then each connection sends two forgeries
    clients, held, deadline = [], [0] * len(workers), time.monotonic() + 30
    try:
        while (len(clients) < 20 or not all(held)) and time.monotonic() < deadline:
            clients.append(httpx.Client())
            assert clients[-1].get(f"{server.base}/healthz", timeout=20).status_code == 200
            held = [connections_held(pid, server.port) for pid in workers]
        answers = [forged_notification(c, server.base) for c in clients for _ in range(2)]
    finally:
        for c in clients:
            c.close()
    # then both processes took connections, every forgery was refused, and the one counter they
    # share stored exactly 10 (two per-process counters would have let up to 20 through)
    assert all(held) and sum(held) == len(clients), held
    assert set(answers) <= {400, 403} and len(answers) == 2 * len(clients) >= 40
    with sqlite3.connect(data_dir / "kami.sqlite3") as db:
        stored = db.execute("SELECT count(*) FROM payments_notification WHERE result = 'rejected'").fetchone()[0]
    assert stored == 10


def test_a_server_process_that_dies_is_replaced_and_none_outlives_a_killed_serve(data_dir, serve):  # noqa: F811
    # given
    server = serve(data_dir, "--no-worker", "--processes", "2")
    first = wait_until(lambda: len(server_processes(server.proc.pid)) == 2 and server_processes(server.proc.pid))
    # when one server process is killed
    os.kill(first[0], signal.SIGKILL)
    # then another takes its place and the shop answers throughout
    now = wait_until(lambda: (p := server_processes(server.proc.pid)) and len(p) == 2 and first[0] not in p and p)
    assert now and first[1] in now, server.output()
    assert all(httpx.get(f"{server.base}/healthz", timeout=10).status_code == 200 for _ in range(10))
    assert "ended unexpectedly (killed by SIGKILL); starting it again" in server.output()
    # when serve itself is killed outright (no code of its runs)
    os.kill(server.proc.pid, signal.SIGKILL)
    server.proc.wait(timeout=20)
    server.stop = server.log.close  # nothing left to stop
    # then its server processes die with it, and the port is free for the next serve
    assert wait_until(lambda: all(gone(pid) for pid in now), seconds=5), now
    port_free(server.port)


def test_sigterm_stops_serve_and_its_server_processes(data_dir, serve):  # noqa: F811
    # given
    server = serve(data_dir, "--no-worker", "--processes", "2")
    workers = wait_until(lambda: len(server_processes(server.proc.pid)) == 2 and server_processes(server.proc.pid))
    # when serve alone is asked to stop (its server processes are not signalled by anyone else)
    os.kill(server.proc.pid, signal.SIGTERM)
    # then it stops them, and itself, cleanly; and its start-up lines were written once, not once
    # more by each server process as it exited (its stdout here is a file: block-buffered)
    assert server.proc.wait(timeout=20) == 0, server.output()
    server.stop = server.log.close
    assert all(gone(pid) for pid in workers), workers
    port_free(server.port)
    assert server.output().count("Kami is serving on") == 1, server.output()


def port_free(port: int) -> None:
    """Nothing listens on `port` any more, within a moment (the kernel drops a listening socket
    shortly after its last holder is gone). Binding it to check would race the machine's other
    outgoing connections, which may take the port as their own ephemeral one."""
    def listening() -> list[str]:
        return [line for table in ("/proc/net/tcp", "/proc/net/tcp6") for line in Path(table).read_text().splitlines()[1:]
                if int(line.split()[1].rsplit(":", 1)[1], 16) == port and line.split()[3] == "0A"]

    assert wait_until(lambda: not listening(), seconds=5), listening()


def test_sqlite_gets_one_server_process_by_default(data_dir, serve):  # noqa: F811
    # given the embedded default (one writer), when served with no --processes
    server = serve(data_dir, "--no-worker")
    # then serve itself serves: it has no server processes of its own
    assert server_processes(server.proc.pid) == []
    assert httpx.get(f"{server.base}/healthz", timeout=10).status_code == 200


def test_workers_two_starts_two_delivery_workers_that_stop_with_serve(data_dir, serve):  # noqa: F811
    # given: serve asked for two delivery workers (SQLite: serve itself is the one server process)
    server = serve(data_dir, "--workers", "2")
    # then: its children are two `kami worker` processes
    workers = wait_until(lambda: len(children(server.proc.pid)) == 2 and children(server.proc.pid))
    assert workers, server.output()
    for pid in workers:
        assert Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[1:4] == [b"-m", b"kami", b"worker"]
    # when serve is asked to stop
    os.kill(server.proc.pid, signal.SIGTERM)
    # then both workers stop with it, and it had said both pids (its stdout is a file: written at exit)
    assert server.proc.wait(timeout=30) == 0, server.output()
    server.stop = server.log.close
    assert wait_until(lambda: all(gone(pid) for pid in workers), seconds=20), workers
    said = re.search(r"delivery worker pids (\d+), (\d+)", server.output())
    assert said and sorted(map(int, said.groups())) == sorted(workers), server.output()


def test_workers_refuses_zero_with_what_to_type_instead(data_dir):  # noqa: F811
    # when
    run = subprocess.run([sys.executable, "-m", "kami", "serve", "--workers", "0"], env=kami_env(data_dir),
                         capture_output=True, text=True, timeout=120)
    # then: a clear refusal naming the way to start none
    assert run.returncode == 2
    assert "--workers: '0': give 1 or more (--no-worker starts none)" in run.stderr


def cpus_of(pid: int) -> set[str]:
    """The CPUs each thread of process `pid` may run on (Linux's Cpus_allowed_list), one entry per distinct set."""
    found = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            status = (task / "status").read_text()
        except FileNotFoundError:  # a thread that has just ended
            continue
        found.add(re.search(r"^Cpus_allowed_list:\s*(\S+)", status, re.M).group(1))
    return found


def one_cpu(cpus: set[str]) -> bool:
    return len(cpus) == 1 and next(iter(cpus)).isdigit()  # "1", not "0-1" or "0,2"


MANY_CPUS = pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="pinning needs two CPUs or more")


@MANY_CPUS
def test_each_server_process_keeps_to_a_cpu_of_its_own(data_dir, serve):  # noqa: F811
    # given two server processes that have served (their threads started)
    server = serve(data_dir, "--no-worker", "--processes", "2")
    workers = wait_until(lambda: len(server_processes(server.proc.pid)) == 2 and server_processes(server.proc.pid))
    assert workers and all(httpx.get(f"{server.base}/", timeout=20).status_code == 200 for _ in range(8))
    # then every thread of each keeps to one CPU, each process to another, and serve itself is free
    pinned = [cpus_of(pid) for pid in workers]
    assert all(map(one_cpu, pinned)) and pinned[0] != pinned[1], pinned
    assert not one_cpu(cpus_of(server.proc.pid))


@MANY_CPUS
def test_kami_pin_cpus_0_lets_the_server_processes_move(data_dir, serve):  # noqa: F811
    # given two server processes started with KAMI_PIN_CPUS=0
    server = serve(data_dir, "--no-worker", "--processes", "2", KAMI_PIN_CPUS="0")
    workers = wait_until(lambda: len(server_processes(server.proc.pid)) == 2 and server_processes(server.proc.pid))
    assert workers and httpx.get(f"{server.base}/healthz", timeout=20).status_code == 200
    # then they may run on every CPU serve may
    assert [cpus_of(pid) for pid in workers] == [cpus_of(server.proc.pid)] * 2 and not one_cpu(cpus_of(workers[0]))


@MANY_CPUS
def test_the_one_server_process_keeps_to_one_cpu_and_its_delivery_worker_does_not(data_dir, serve):  # noqa: F811
    # given the SQLite default: serve itself serves, with one delivery worker beside it
    server = serve(data_dir)
    worker = wait_until(lambda: children(server.proc.pid))
    assert worker and httpx.get(f"{server.base}/", timeout=20).status_code == 200
    # then serve's threads keep to one CPU, and the worker it started before may move
    assert wait_until(lambda: one_cpu(cpus_of(server.proc.pid))), cpus_of(server.proc.pid)
    assert not one_cpu(cpus_of(worker[0])) and len(cpus_of(worker[0])) == 1
