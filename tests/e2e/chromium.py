"""Debian's Chromium for the browser tests (never a downloaded browser), and where screenshots go."""
from __future__ import annotations

import shutil
from pathlib import Path

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"]
SHOTS = Path(__file__).resolve().parents[2] / "test-output" / "e2e"
BACKOFFICE_SHOTS = SHOTS / "backoffice"
