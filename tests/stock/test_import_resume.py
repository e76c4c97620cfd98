"""An import job killed mid-file (a real worker process, SIGKILL) and resumed by another worker:
no key twice, none lost, and counts and report as if it had never died."""
from __future__ import annotations

import csv
import io
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.db import connection

from kami.core import clock
from kami.stock.jobs import import_job_claim_due, import_job_create, import_job_report_open, import_job_run
from kami.stock.models import ImportJob, Key
from kami.stock.vault import key_fingerprint

ROOT = Path(__file__).resolve().parents[2]
LINES = 120_000


def _file() -> tuple[bytes, dict]:
    """Distinct keys with, every 997 lines, a repeat of a key from 15,000 lines before (often in
    an earlier chunk, so across the kill too), and every 1,009 lines a bad line."""
    lines, expected = [], {"keys": [], "problems": []}
    for n in range(1, LINES + 1):
        if n % 1009 == 0:
            lines.append(b"bad\x02line")
            expected["problems"].append((n, "contains control character U+0002"))
        elif n % 997 == 0 and n > 15_000 and not lines[n - 15_001].startswith(b"bad"):
            lines.append(lines[n - 15_001])
            expected["problems"].append((n, "duplicate in the file"))
        else:
            lines.append(b"RESUME-%07d" % n)
            expected["keys"].append(lines[-1].decode())
    return b"\n".join(lines) + b"\n", expected


@pytest.mark.slow
@pytest.mark.timeout(1800)
@pytest.mark.django_db(transaction=True)
def test_an_import_killed_mid_file_resumes_exactly(make_product, tmp_path):
    # given: an uploaded file, and a real worker process running its job
    data, expected = _file()
    product = make_product()
    job = import_job_create(product=product, stream=io.BytesIO(data), filename="big.txt", actor="alice")
    ours = _sessions()
    worker = subprocess.Popen([sys.executable, "-c", _RUNNER], cwd=ROOT, env=_child_env(), stderr=subprocess.PIPE)
    # when: it is killed once it has written a few chunks, far from the end
    try:
        _wait_for(lambda: ImportJob.objects.get(pk=job.pk).lines_done > 0, worker)
        time.sleep(0.3)
    finally:
        worker.send_signal(signal.SIGKILL)
        _, err = worker.communicate(timeout=60)
    died = ImportJob.objects.get(pk=job.pk)
    assert (died.status, died.lease_owner) == ("running", "victim"), err.decode()[-2000:]
    assert 0 < died.lines_done < LINES, "the worker was not killed mid-file: the test proves nothing"
    # and another worker takes the job over once the dead one's lease has run out. A lease lasts
    # minutes: by then the database has ended the dead worker's session, and a COMMIT it had sent
    # just before the kill has landed. Cutting the lease short here, the test waits for that.
    _wait_for_sessions_to_end(ours)
    ImportJob.objects.filter(pk=job.pk).update(lease_until=clock.now())
    assert import_job_claim_due(owner="rescuer").pk == job.pk
    job = import_job_run(job_id=job.pk, owner="rescuer")
    # then: every key once, none lost
    keys = Key.objects.filter(product=product)
    assert sorted(keys.values_list("fingerprint", flat=True)) == sorted(key_fingerprint(k) for k in expected["keys"])
    # and the counts and the report are those of a run that never died
    problems = expected["problems"]
    in_file = sum(1 for _, p in problems if p == "duplicate in the file")
    assert (job.status, job.runs, job.imported, job.duplicates, job.invalid, job.blank) == (
        "done", 2, len(expected["keys"]), in_file, len(problems) - in_file, 0)
    with import_job_report_open(job_id=job.pk, actor="alice") as f:
        rows = list(csv.reader(io.StringIO(f.read().decode("utf-8"))))[1:]
    assert [(int(line), problem) for line, problem, _ in rows] == problems
    for line, problem, detail in rows:
        if problem == "duplicate in the file":  # the key it repeats: line n - 15,000, stored once
            original = "RESUME-%07d" % (int(line) - 15_000)
            assert detail in (f"line {int(line) - 15_000}",
                              f"key #{keys.get(fingerprint=key_fingerprint(original)).pk}"), (line, detail)


# The job runner of `kami worker`, alone: leases the one due job and runs it.
_RUNNER = """
import django
django.setup()
from kami.fulfilment.imports import import_jobs_run_due
import_jobs_run_due(owner="victim")
"""


def _child_env() -> dict:
    db = connection.settings_dict
    if connection.vendor == "sqlite":
        url = f"sqlite:///{db['NAME']}"
    else:
        scheme = "postgres" if connection.vendor == "postgresql" else "mysql"
        auth = db["USER"] + (f":{db['PASSWORD']}" if db.get("PASSWORD") else "")
        url = f"{scheme}://{auth}@{db['HOST']}:{db['PORT']}/{db['NAME']}"
    return {**os.environ, "DJANGO_SETTINGS_MODULE": "kami.settings", "DATABASE_URL": url}


def _sessions() -> set:
    """The database server's sessions on the test database (none on SQLite: no server)."""
    queries = {"postgresql": "SELECT pid FROM pg_stat_activity WHERE datname = current_database()",
               "mysql": "SELECT id FROM information_schema.processlist WHERE db = DATABASE()"}
    if connection.vendor not in queries:
        return set()
    with connection.cursor() as cursor:
        cursor.execute(queries[connection.vendor])
        return {row[0] for row in cursor.fetchall()}


def _wait_for_sessions_to_end(ours: set, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while _sessions() - ours:
        assert time.monotonic() < deadline, f"the killed worker's database session never ended: {_sessions() - ours}"
        time.sleep(0.05)


def _wait_for(condition, worker: subprocess.Popen, seconds: float = 300) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert worker.poll() is None, f"the worker ended early: {worker.stderr.read().decode()[-2000:]}"
        assert time.monotonic() < deadline, "the worker wrote no checkpoint"
        time.sleep(0.02)
