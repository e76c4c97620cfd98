"""The README's and docs' shell commands, run verbatim: every line of a fenced ```sh block that
starts with `kami ` (or `./dev ` and a kami command), placeholders filled from the table below,
in document order, against one fresh data dir (SQLite), each expected to exit 0. The docs cannot
drift from the CLI without this failing.

`export` lines are applied too (the README sets production variables before its commands), all
but the database and mail addresses: the run keeps its own SQLite file and writes mail to disk.
"""
from __future__ import annotations

import base64
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

REPO = Path(__file__).resolve().parents[2]
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
# Its own SQLite data dir on every run: the same whatever the suite's engine (./dev runs it in the PostgreSQL pass).
pytestmark = [pytest.mark.newcomer, pytest.mark.sqlite_only, pytest.mark.engine_free]

# What a reader replaces before running a line: (text in the docs, what the test types instead).
PLACEHOLDERS = [
    ("NAME [--enable|--disable] [KEY=VALUE …]", "epay --enable"),  # the synopsis in docs/payments.md
    ("key=…", "key=merchant-key-from-the-panel"),
    ("YOUR_KEY", "merchant-key-from-the-panel"),
    ("app_id=2021…", "app_id=2021000000000001"),
    ("ORDER_NO", "K-NO-SUCH-ORDER"),
    ("SLUG", "netflix-1m"),
]
# Commands that do not return: their reason, by the kami command's first word.
NOT_RUN = {
    "serve": "serves until stopped (tests/cli/test_serve.py and the newcomer test start it)",
    "demo": "serves until stopped (tests/test_newcomer.py runs `./dev demo` for real)",
    "worker": "delivers until stopped unless --once",
    "test": "`./dev test` runs this very suite",
}
KEPT_LOCAL = ("DATABASE_URL", "EMAIL_URL")
FENCE = re.compile(r"^```(\w*)\s*$")


def shell_lines(path: Path) -> list[str]:
    """The lines of the file's ```sh blocks, continuation lines joined."""
    lines, block, pending = [], None, ""
    for raw in path.read_text(encoding="utf-8").splitlines():
        fence = FENCE.match(raw.strip())
        if fence:
            block = None if block is not None else fence.group(1)
            continue
        if block in ("sh", "bash", "shell"):
            pending += raw.rstrip()
            if pending.endswith("\\"):
                pending = pending[:-1] + " "
                continue
            lines.append(pending.strip())
            pending = ""
    return lines


def documented() -> list[tuple[str, str]]:
    """(where, line) for every kami command and export line, in document order."""
    return [(f"{path.relative_to(REPO)}: {line}", line) for path in DOCS for line in shell_lines(path)
            if line.startswith(("kami ", "./dev ", "export "))]


def filled(line: str) -> str:
    for text, value in PLACEHOLDERS:
        line = line.replace(text, value)
    return line


def write_files(cwd: Path) -> None:
    """The files the commands name: a key list and a pair of Alipay keys (the app's private key as
    PEM, Alipay's public key as the bare base64 its console shows)."""
    (cwd / "codes.txt").write_text("".join(f"NFX-{i:04d}-GIFT\n" for i in range(30)), encoding="utf-8")
    app = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    (cwd / "app_private.pem").write_bytes(app.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    alipay = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()
    der = alipay.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    (cwd / "alipay_public.txt").write_text(base64.b64encode(der).decode(), encoding="utf-8")


def test_the_docs_show_the_commands_this_test_runs():
    lines = [line for _, line in documented()]
    assert "kami gateway set epay --enable pid=1001 key=… url=https://pay.example/" in lines
    assert any(line.startswith("kami keys import") for line in lines)
    assert all("…" not in filled(line) for line in lines if line.startswith("kami "))


def test_every_documented_command_runs_as_written(tmp_path):
    # given a fresh directory and data dir, and nothing from this test run's settings
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("KAMI_") and k not in (*KEPT_LOCAL, "DJANGO_SETTINGS_MODULE")}
    env["KAMI_DATA_DIR"] = str(tmp_path / "var")
    write_files(tmp_path)
    ran, failed = [], []
    # when each documented line runs in document order
    for where, line in documented():
        words = shlex.split(filled(line), comments=True)
        if words[0] == "export":
            env.update(w.split("=", 1) for w in words[1:] if w.split("=", 1)[0] not in KEPT_LOCAL and "$" not in w)
            continue
        args = words[1:]
        if args[0] in NOT_RUN and "--once" not in args:
            continue  # see NOT_RUN for why
        done = subprocess.run([sys.executable, "-m", "kami", *args], cwd=tmp_path, env=env, capture_output=True,
                              text=True, timeout=120)
        ran.append(where)
        if done.returncode != 0:
            failed.append(f"{where}\n  exit {done.returncode}: {(done.stderr or done.stdout).strip()[-800:]}")
    # then every one succeeded
    assert not failed, "\n".join(failed)
    assert len(ran) >= 8, ran
