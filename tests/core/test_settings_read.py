"""Settings defaults have one owner, kami/settings.py: code reads `settings.KAMI_…` directly, so a
default cannot be written twice and drift (issue 15: a backoff schedule of 6 steps in code
against 11 in settings)."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

import kami.settings

pytestmark = pytest.mark.sqlite_only  # reads source files: once per run is enough
KAMI = Path(kami.settings.__file__).parent


def _settings_reads(path: Path) -> tuple[list[str], list[int]]:
    """The KAMI_* names read as `settings.X`, and the lines of `getattr(settings, …)` calls."""
    names, getattrs = [], []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "settings" \
                and node.attr.startswith("KAMI_"):
            names.append(node.attr)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "getattr" \
                and node.args and isinstance(node.args[0], ast.Name) and node.args[0].id == "settings":
            getattrs.append(node.lineno)
    return names, getattrs


def test_kami_settings_are_read_directly_and_each_is_defined_in_settings_py():
    # given every module of the package
    undefined, with_getattr = {}, {}
    # when
    for path in sorted(KAMI.rglob("*.py")):
        names, getattrs = _settings_reads(path)
        missing = sorted({name for name in names if not hasattr(kami.settings, name)})
        if missing:
            undefined[str(path.relative_to(KAMI))] = missing
        if getattrs:
            with_getattr[str(path.relative_to(KAMI))] = getattrs
    # then
    assert with_getattr == {}, "read settings.KAMI_… directly: its default lives in kami/settings.py"
    assert undefined == {}, "define these in kami/settings.py (with their default)"


def test_the_reader_sees_both_kinds_of_read(tmp_path):
    # given / when / then: an empty answer above means something
    module = tmp_path / "m.py"
    module.write_text('from django.conf import settings\nx = settings.KAMI_NOPE\ny = getattr(settings, "KAMI_Y", 1)\n')
    assert _settings_reads(module) == (["KAMI_NOPE"], [3])
