"""The import contracts in pyproject.toml ([tool.importlinter]) hold: run in the suite, so CI
fails on a gateway module that imports another one or a model (DESIGN.md §3, §4), or on
django.http reaching the gateways or the notification path."""
from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import grimp
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


HTTP_FREE = ["kami.fulfilment.notify", "kami.payments.interface", "kami.payments.toolkit", "kami.payments.gateways",
             "kami.core.inbound"]


def _django_http_imports(path: Path) -> list[int]:
    lines = []
    for node in ast.walk(ast.parse(path.read_text())):
        names = [node.module or ""] if isinstance(node, ast.ImportFrom) else \
            [alias.name for alias in node.names] if isinstance(node, ast.Import) else []
        lines += [node.lineno for name in names if name == "django.http" or name.startswith("django.http.")]
    return lines


def test_no_http_request_reaches_the_gateways_or_the_notification_path():
    # given: the gateway modules, their interface and toolkit, the notification path, and every
    # kami module they import, however indirectly (import-linter squashes django into one
    # package, so django.http cannot be forbidden there: this reads the imports instead)
    graph = grimp.build_graph("kami", cache_dir=None)
    targets = {*HTTP_FREE, *graph.find_children("kami.payments.gateways")}
    reached = set(targets).union(*(graph.find_upstream_modules(module) for module in targets))
    assert {"kami.payments.gateways.epay", "kami.fulfilment.confirm", "kami.core.errors"} <= reached  # the walk works
    # when
    found = {}
    for module in sorted(reached):
        path = ROOT.joinpath(*module.split("."))
        path = path / "__init__.py" if path.is_dir() else path.with_suffix(".py")
        if lines := _django_http_imports(path):
            found[module] = lines
    # then: they take `Inbound` and give `Reply` (kami/core/inbound.py); only edges speak HTTP
    assert found == {}


def test_the_django_http_check_sees_an_import_of_it(tmp_path):
    # given / when / then: the reader above finds both spellings, so its empty answer means something
    module = tmp_path / "m.py"
    module.write_text("import os\nfrom django.http import HttpRequest\nimport django.http.multipartparser\n")
    assert _django_http_imports(module) == [2, 3]
