"""deploy/: the systemd units pass `systemd-analyze verify` and keep their hardening; the env
example names what production needs; the Caddyfile is valid for the installed Caddy."""
from __future__ import annotations

import configparser
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
UNITS = ("kami-web.service", "kami-worker.service")
ALL_UNITS = (*UNITS, "kami-backup.service", "kami-backup.timer")
pytestmark = pytest.mark.sqlite_only


def unit(name: str) -> configparser.ConfigParser:
    parsed = configparser.ConfigParser(strict=False, interpolation=None)
    parsed.optionxform = str
    parsed.read(ROOT / "deploy" / "systemd" / name)
    return parsed


@pytest.mark.parametrize("name", UNITS)
def test_the_units_run_as_a_dedicated_user_with_only_the_data_dir_writable(name):
    # when
    service = unit(name)["Service"]
    # then
    assert (service["User"], service["Group"]) == ("kami", "kami")
    assert service["Restart"] in ("on-failure", "always")
    assert (service["ProtectSystem"], service["NoNewPrivileges"], service["PrivateTmp"]) == ("strict", "yes", "yes")
    assert service["ReadWritePaths"] == "/var/lib/kami"
    assert service["EnvironmentFile"] == "/etc/kami/kami.env"


def test_the_units_pass_systemd_analyze_verify(tmp_path):
    # given the units as installed, pointing at this checkout's `kami` and an env file
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed (apt-get install systemd): the units were NOT verified")
    kami_bin = Path(sys.executable).parent / "kami"
    env_file = tmp_path / "kami.env"
    shutil.copy(ROOT / "deploy" / "kami.env.example", env_file)
    for name in ALL_UNITS:
        text = (ROOT / "deploy" / "systemd" / name).read_text()
        (tmp_path / name).write_text(text.replace("/opt/kami/.venv/bin/kami", str(kami_bin))
                                     .replace("/etc/kami/kami.env", str(env_file)))
    # when
    done = subprocess.run([analyze, "verify", *(str(tmp_path / n) for n in ALL_UNITS)], capture_output=True, text=True,
                          timeout=60)
    # then nothing about our units (systemd may still grumble about the host's own units)
    ours = [line for line in (done.stdout + done.stderr).splitlines() if "kami-" in line]
    assert ours == [], "\n".join(ours)


def test_the_env_example_is_a_production_shop_behind_a_local_proxy():
    # when
    lines = (ROOT / "deploy" / "kami.env.example").read_text().splitlines()
    values = dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))
    # then
    assert values["KAMI_ENV"] == "production" and values["KAMI_BASE_URL"].startswith("https://")
    assert values["KAMI_TRUSTED_PROXIES"] == "127.0.0.1,::1"
    assert values["KAMI_DATA_DIR"] == "/var/lib/kami"
    assert {"DATABASE_URL", "EMAIL_URL", "KAMI_ADMIN_EMAIL"} <= set(values)


def test_the_caddyfile_is_valid_for_the_installed_caddy(tmp_path):
    caddy = shutil.which("caddy")
    if caddy is None:
        pytest.skip("caddy is not installed (apt-get install caddy; `./dev test` installs it): deploy/Caddyfile was NOT checked")
    # when
    done = subprocess.run([caddy, "validate", "--config", str(ROOT / "deploy" / "Caddyfile"), "--adapter", "caddyfile"],
                          capture_output=True, text=True, timeout=60,
                          env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "XDG_DATA_HOME": str(tmp_path)})
    # then
    assert done.returncode == 0, done.stderr[-2000:]
    assert '"level":"warn"' not in done.stderr, done.stderr[-2000:]
