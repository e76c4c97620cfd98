"""Installing Kami prints no deprecation warning: the licence is an SPDX expression (PEP 639),
and the build asks for a setuptools that understands one."""
from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from tests.test_newcomer import fresh_copy

REPO = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))


def test_the_licence_is_an_spdx_expression_with_a_setuptools_that_reads_it():
    assert PYPROJECT["project"]["license"] == "MIT"
    setuptools = next(Requirement(r) for r in PYPROJECT["build-system"]["requires"] if r.startswith("setuptools"))
    assert not setuptools.specifier.contains("76.1.0") and setuptools.specifier.contains("77.0.3")


@pytest.mark.slow
@pytest.mark.sqlite_only
def test_building_the_package_prints_no_deprecation_warning(tmp_path):
    # given a clean copy of the repository (the build writes into the source tree)
    source = tmp_path / "src"
    source.mkdir()
    fresh_copy(source)
    # when pip builds the wheel, as `pip install` does, with the build requirements it fetches
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-v", "-w", str(tmp_path / "dist"), str(source)],
                           capture_output=True, text=True, timeout=300)
    # then
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    output = built.stdout + built.stderr
    assert "deprecated" not in output.lower(), [line for line in output.splitlines() if "eprecat" in line]
    assert list((tmp_path / "dist").glob("kami_shop-*.whl"))
