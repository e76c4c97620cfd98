"""Each test here copies the run's one `kami demo --no-serve` data dir (tests/conftest.py)."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest


@pytest.fixture
def demo_shop(demo_template, tmp_path) -> Path:
    target = tmp_path / "var"
    shutil.copytree(demo_template, target)  # modes copied too: what `kami demo` made
    return target
