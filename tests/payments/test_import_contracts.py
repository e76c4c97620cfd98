"""The import contracts in pyproject.toml ([tool.importlinter]) hold: run in the suite, so CI
fails on a gateway module that imports another one or a model (DESIGN.md §3, §4)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.sqlite_only  # no database: once per run is enough
ROOT = Path(__file__).resolve().parents[2]


def test_lint_imports_keeps_every_contract():
    # given the contracts in pyproject.toml
    command = [str(Path(sys.executable).parent / "lint-imports"), "--no-cache"]
    # when
    run = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120,
                         env={**os.environ, "COLUMNS": "200"})
    # then: every contract kept, among them the gateways' two
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    assert "Gateway modules are independent of each other" in run.stdout
    assert "Gateway modules import no model" in run.stdout
    # and the layers of DESIGN.md section 3
    assert "Layers (DESIGN.md section 3)" in run.stdout
    assert "Edges are independent of each other" in run.stdout
    assert "Nothing imports an edge" in run.stdout
    assert "0 broken" in run.stdout
