"""Starting, watching and killing Kami processes from a test."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from django.db import connection

ROOT = Path(__file__).resolve().parents[2]


def database_url() -> str:
    """The test database, as a URL another process can use."""
    db = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{db['NAME']}"
    scheme = "postgres" if connection.vendor == "postgresql" else "mysql"
    auth = db["USER"] + (f":{db['PASSWORD']}" if db.get("PASSWORD") else "")
    return f"{scheme}://{auth}@{db['HOST'] or '127.0.0.1'}:{db['PORT']}/{db['NAME']}"


def kami_start(args: list[str], *, env: dict, log: Path) -> subprocess.Popen:
    """`python -m kami <args>` with `env` over this process's environment; its output goes to `log`."""
    full = {**os.environ, "DJANGO_SETTINGS_MODULE": "kami.settings", "KAMI_LOG_LEVEL": "INFO", **env}
    with open(log, "a") as out:
        return subprocess.Popen([sys.executable, "-m", "kami", *args], cwd=ROOT, env=full, stdout=out,
                                stderr=subprocess.STDOUT)


def kami_run(args: list[str], *, env: dict, timeout: float = 60) -> subprocess.CompletedProcess:
    """`python -m kami <args>` to the end, its output captured."""
    full = {**os.environ, "DJANGO_SETTINGS_MODULE": "kami.settings", **env}
    return subprocess.run([sys.executable, "-m", "kami", *args], cwd=ROOT, env=full, capture_output=True, text=True,
                          timeout=timeout)


def kill(proc: subprocess.Popen) -> None:
    """SIGKILL: no handler runs, nothing is released."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)


def wait_until(check: Callable[[], object], *, timeout: float, what: str, step: float = 0.05):
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout}s: {what}")
        time.sleep(step)


def log_has(log: Path, text: str) -> bool:
    return log.exists() and text in log.read_text(errors="replace")
