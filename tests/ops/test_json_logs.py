"""KAMI_LOG_FORMAT=json: every log line is one JSON object (time, level, logger, message, extra
fields), and no key reaches it — the text format's guarantees (tests/test_secrets.py,
tests/test_log_format.py) hold in JSON too."""
from __future__ import annotations

import io
import json
import logging
import re
import subprocess
import sys

import pytest

from kami.ops.logformat import JsonFormatter
from tests.test_secrets import PLAINTEXTS, purchase_logging_sql
from tests.test_security_deploy import kami, kami_env

ISO_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00$")
PLAINTEXTS = ["JSONLOG-KEY-AAAA-0001", "JSONLOG-KEY-BBBB-0002", "秘密-卡密-🔑-0003"]


def json_lines(stderr: str) -> list[dict]:
    entries = [json.loads(line) for line in stderr.splitlines()]  # raises on any line that is not JSON
    for entry in entries:
        assert ISO_UTC.match(entry["time"]) and entry["level"] and entry["logger"] and "message" in entry, entry
    return entries


@pytest.mark.sqlite_only
def test_kami_commands_write_one_json_object_per_stderr_line_and_no_key(tmp_path):
    # given a new shop, its keys known to the test, every command logging JSON
    data_dir, keys_file = tmp_path / "var", tmp_path / "keys.txt"
    keys_file.write_text("\n".join(PLAINTEXTS) + "\n", encoding="utf-8")
    env = {"KAMI_LOG_FORMAT": "json", "KAMI_LOG_LEVEL": "DEBUG"}
    # when it is made, stocked, and its keys exported
    runs = [kami(data_dir, "demo", "--no-serve", **env), kami(data_dir, "keys", "import", "steam-50", str(keys_file), **env),
            kami(data_dir, "keys", "export", "steam-50", **env)]
    # then
    for done in runs:
        assert done.returncode == 0, done.stderr[-2000:]
    # (export prints its one-line summary to stderr, beside the keys on stdout: command output, not a log record)
    entries = [entry for done in runs[:2] for entry in json_lines(done.stderr)]
    assert any(e["logger"] == "kami.datadir" and e["level"] == "WARNING" and "data_key" in e["message"] for e in entries)
    assert all(text in runs[2].stdout for text in PLAINTEXTS)  # the export did print them, to stdout
    for done in runs:
        for text in PLAINTEXTS:
            assert text not in done.stderr


@pytest.mark.sqlite_only
def test_extra_fields_and_exceptions_are_kept_and_a_secret_stays_masked(tmp_path):
    # given a process logging JSON, and a record carrying extras, a Secret and an exception
    code = ("import django, logging; django.setup(); from kami.core.crypto import Secret\n"
            "try:\n    1/0\nexcept ZeroDivisionError:\n"
            "    logging.getLogger('kami.test').exception('paid %s', Secret('PLAIN-KEY-1'),\n"
            "        extra={'order_no': 'K123', 'n': 2, 'key': Secret('PLAIN-KEY-2'), 'keys': [Secret('PLAIN-KEY-3')]})\n")
    env = kami_env(tmp_path / "var", KAMI_LOG_FORMAT="json")
    # when
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    # then
    (entry,) = [e for e in json_lines(done.stderr) if e["logger"] == "kami.test"]
    assert entry["level"] == "ERROR" and entry["message"] == "paid Secret(***)"
    assert entry["order_no"] == "K123" and entry["n"] == 2
    assert entry["key"] == "Secret(***)" and entry["keys"] == ["Secret(***)"]
    assert "ZeroDivisionError" in entry["exception"]
    assert "PLAIN-KEY" not in done.stderr


@pytest.mark.sqlite_only
def test_an_unknown_log_format_is_refused(tmp_path):
    env = {**kami_env(tmp_path / "var"), "KAMI_LOG_FORMAT": "xml"}
    done = subprocess.run([sys.executable, "-c", "import django; django.setup()"], env=env, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode != 0 and "KAMI_LOG_FORMAT='xml'" in done.stderr


@pytest.mark.django_db(transaction=True)
def test_full_purchase_at_debug_in_json_never_logs_a_key(make_product):
    # given every logger at DEBUG, SQL with its parameters included, written by the JSON formatter
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(JsonFormatter())
    root, sql = logging.getLogger(), logging.getLogger("django.db.backends")
    levels = root.level, sql.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    sql.setLevel(logging.DEBUG)
    try:
        # when a purchase runs to the email
        detail = purchase_logging_sql(make_product(), worker_id="json-secrets-test")
    finally:
        root.removeHandler(handler)
        root.setLevel(levels[0])
        sql.setLevel(levels[1])
    # then the SQL was logged as JSON, with its extra fields, and no key is anywhere in it
    assert detail["status"] == "fulfilled" and len(detail["keys"]) == 2
    entries = [json.loads(line) for line in out.getvalue().splitlines()]
    assert any(e["logger"] == "django.db.backends" and "sql" in e and "params" in e for e in entries)
    for text in PLAINTEXTS:
        assert text not in out.getvalue()
        assert json.dumps(text)[1:-1] not in out.getvalue()  # nor escaped

