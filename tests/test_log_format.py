"""Log lines carry an unambiguous time: ISO 8601 in UTC with the offset written out, whatever
time zone the machine or the shop (KAMI_TIME_ZONE) is in."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from datetime import datetime, timedelta, timezone

import pytest

pytestmark = pytest.mark.sqlite_only  # no database

LINE = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00) WARNING kami\.test: hello$")


def test_a_log_line_starts_with_iso_8601_utc_time_and_offset(tmp_path):
    # given a process in a shop and on a machine that are both eight hours ahead of UTC
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "kami.settings", "KAMI_DATA_DIR": str(tmp_path),
           "TZ": "Asia/Shanghai", "KAMI_TIME_ZONE": "Asia/Shanghai"}
    code = "import django, logging; django.setup(); logging.getLogger('kami.test').warning('hello')"
    # when it logs
    before = datetime.now(timezone.utc)
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    # then the line's time is UTC, to the millisecond, with +00:00
    lines = [line for line in done.stderr.splitlines() if "kami.test" in line]
    assert len(lines) == 1 and LINE.match(lines[0]), done.stderr
    logged = datetime.fromisoformat(LINE.match(lines[0]).group(1))
    assert before - timedelta(seconds=1) <= logged <= datetime.now(timezone.utc)
