#!/usr/bin/env python3
"""Known vulnerabilities in the locked production dependencies (requirements.lock), by pip-audit.

`./dev test` runs this before the suite. It fails (exit 1) only when pip-audit names a
vulnerability. Where the advisory database cannot be reached — no network, a proxy, an index
mirror that has no per-version pages — it prints a visible SKIPPED line and exits 0: a missing
network never fails CI. At most ~1 minute (usually a few seconds).

    python .ci/audit_deps.py [requirements.lock]
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEADLINE = 60  # seconds for the whole audit


def audit_command(lock: Path) -> list[str]:
    # --disable-pip: the lock pins every package with hashes, so nothing is installed to audit it.
    return [sys.executable, "-m", "pip_audit", "--disable-pip", "--require-hashes", "-r", str(lock),
            "--format", "json", "--progress-spinner", "off", "--timeout", "10"]


def verdict(stdout: str, stderr: str) -> tuple[int, list[str]]:
    """(exit status, lines to print) from what pip-audit printed."""
    try:
        report = json.loads(stdout)
    except ValueError:
        reason = (stderr.strip().splitlines() or ["no output"])[-1][:300]
        return 0, [f"SKIPPED dependency audit: pip-audit could not reach its vulnerability database ({reason})"]
    deps = report.get("dependencies", [])
    skipped = [d for d in deps if d.get("skip_reason")]
    found = [(d, v) for d in deps for v in d.get("vulns", [])]
    if found:
        return 1, [f"VULNERABLE {d['name']} {d['version']}: {v['id']} (fixed in {', '.join(v.get('fix_versions') or []) or 'no release yet'})"
                   for d, v in found] + ["upgrade it in pyproject.toml and regenerate requirements.lock (docs/operations.md)"]
    if deps and len(skipped) == len(deps):
        return 0, [f"SKIPPED dependency audit: the vulnerability database answered for none of the {len(deps)} locked "
                   f"dependencies ({skipped[0]['skip_reason']})"]
    lines = [f"dependency audit: no known vulnerabilities in {len(deps) - len(skipped)} locked dependencies"]
    lines += [f"  not checked: {d['name']} ({d['skip_reason']})" for d in skipped]
    return 0, lines


def main(argv: list[str]) -> int:
    lock = Path(argv[1]) if len(argv) > 1 else ROOT / "requirements.lock"
    try:
        done = subprocess.run(audit_command(lock), capture_output=True, text=True, timeout=DEADLINE)
    except FileNotFoundError as exc:
        status, lines = 0, [f"SKIPPED dependency audit: {exc}"]
    except subprocess.TimeoutExpired:
        status, lines = 0, [f"SKIPPED dependency audit: no answer from the vulnerability database within {DEADLINE} s"]
    else:
        status, lines = verdict(done.stdout, done.stderr)
        if "No module named pip_audit" in done.stderr:
            status, lines = 1, ["pip-audit is not installed: pip install -e '.[test]'"]
    print("\n".join(lines), file=sys.stderr if status else sys.stdout)
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv))
