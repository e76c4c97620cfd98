"""One `kami demo --no-serve` data dir for every test here (migrated, demo products and keys, the
sandbox row enabled); each test copies it."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.test_security_deploy import kami


@pytest.fixture(scope="session")
def demo_template(tmp_path_factory) -> Path:
    data_dir = tmp_path_factory.mktemp("demo-template") / "var"
    done = kami(data_dir, "demo", "--no-serve")
    assert done.returncode == 0, done.stderr[-3000:]
    return data_dir


@pytest.fixture
def demo_shop(demo_template, tmp_path) -> Path:
    target = tmp_path / "var"
    shutil.copytree(demo_template, target)  # modes copied too: what `kami demo` made
    return target
