"""aiogram's types take seconds to import (every pydantic model of the Bot API is built): a shop
without a bot, every `kami` command and every server process start must not pay for them."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PROBE = """
import sys, django
django.setup()
import kami.urls
from django.core.management import get_commands, load_command_class
for name, app in get_commands().items():
    if app.startswith("kami"):
        load_command_class(app, name)
print(sorted(m for m in sys.modules if m.split(".")[0] == "aiogram"))
"""


@pytest.mark.sqlite_only
def test_the_urls_and_every_kami_command_load_without_aiogram(tmp_path):
    env = {"PATH": "/usr/bin:/bin", "DJANGO_SETTINGS_MODULE": "kami.settings", "KAMI_DATA_DIR": str(tmp_path)}
    done = subprocess.run([sys.executable, "-c", PROBE], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "[]"
