"""`kami doctor` on a real data dir (a `kami demo` shop set up for production), run as the
merchant runs it: a passing shop prints only ok lines and exits 0; each failure we can provoke
prints one FAIL line naming the fix and exits 1."""
from __future__ import annotations

import base64
import os
import shutil
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller

from tests.delivery.conftest import Mailbox
from tests.ports import free_port
from tests.test_security_deploy import kami

pytestmark = [pytest.mark.sqlite_only, pytest.mark.slow]
EPAY = ["gateway", "set", "epay", "--enable", "pid=1001", "url=https://pay.example/", "key=" + "k" * 32]


@pytest.fixture(scope="module")
def production_template(demo_template, tmp_path_factory) -> Path:
    """The demo shop with the sandbox off and Epay on, as a production shop would have it."""
    data_dir = tmp_path_factory.mktemp("production") / "var"
    shutil.copytree(demo_template, data_dir)
    for args in (["gateway", "set", "sandbox", "--disable"], EPAY):
        done = kami(data_dir, *args)
        assert done.returncode == 0, done.stderr[-2000:]
    return data_dir


@pytest.fixture
def shop(production_template, tmp_path) -> Path:
    target = tmp_path / "var"
    shutil.copytree(production_template, target)
    return target


@pytest.fixture(scope="module")
def smtp_port():
    mailbox = Mailbox()
    controller = Controller(mailbox, hostname="127.0.0.1", port=free_port())
    controller.start()
    yield controller.port
    controller.stop()


@pytest.fixture
def production(smtp_port) -> dict[str, str]:
    return {"KAMI_ENV": "production", "KAMI_BASE_URL": "https://shop.example", "KAMI_ALLOWED_HOSTS": "shop.example",
            "EMAIL_URL": f"smtp://127.0.0.1:{smtp_port}", "KAMI_ADMIN_EMAIL": "me@shop.example"}


def failed_lines(done) -> list[str]:
    return [line for line in done.stdout.splitlines() if line.startswith("FAIL")]


def test_a_sound_production_shop_passes(shop, production):
    # when
    done = kami(shop, "doctor", **production)
    # then one ok line per check, and exit 0 (the worker only warned: no worker ran yet on this
    # new shop; tests/ops/test_heartbeats.py runs one)
    lines = done.stdout.splitlines()
    assert done.returncode == 0, done.stdout + done.stderr
    assert [line.split(":")[0] for line in lines] == [
        "ok    settings", "ok    base URL", "ok    database", "ok    data key", "ok    email", "ok    gateway epay",
        "warn  worker", "ok    disk"]
    assert "answers EHLO" in done.stdout and "opens stored keys" in done.stdout


@pytest.mark.parametrize("checks, env, says", [
    (["settings"], {"KAMI_ENV": "prod"}, "neither development nor production"),
    (["database"], {"DATABASE_URL": "postgres://kami@127.0.0.1:1/kami"}, "check DATABASE_URL"),
    (["email"], {"EMAIL_URL": f"smtp://127.0.0.1:{free_port()}"}, "check EMAIL_URL"),
    (["base URL"], {"KAMI_BASE_URL": "http://shop.example"}, "set KAMI_BASE_URL=https://"),
    # Epay's secret is sealed with the data key too: a keyring that cannot open keys cannot open it.
    (["data key", "gateway epay"], {"KAMI_DATA_KEY": "kother:" + base64.b64encode(b"\x02" * 32).decode()},
     "restore the data key"),
])
def test_a_broken_setting_fails_its_check(shop, production, checks, env, says):
    # when
    done = kami(shop, "doctor", **{**production, **env})
    # then
    assert done.returncode == 1
    assert [line.split(":")[0] for line in failed_lines(done)] == [f"FAIL  {check}" for check in checks]
    assert says in failed_lines(done)[0]


def test_a_data_key_with_the_right_id_and_the_wrong_bytes_fails(shop, production):
    # given the keyring's id with other key material
    key_id = (shop / "data_key").read_text().split(":")[0]
    # when
    done = kami(shop, "doctor", KAMI_DATA_KEY=f"{key_id}:" + base64.b64encode(os.urandom(32)).decode(), **production)
    # then
    assert done.returncode == 1
    assert failed_lines(done)[0].startswith(f"FAIL  data key: data key '{key_id}'")


def test_a_lost_data_key_fails(shop, production):
    # given the data key file gone, keys still stored
    (shop / "data_key").unlink()
    # when
    done = kami(shop, "doctor", **production)
    # then: the doctor said so and made no new key
    assert done.returncode == 1
    assert failed_lines(done)[0].startswith("FAIL  data key: no data key")
    assert not (shop / "data_key").exists()


def test_a_database_not_migrated_fails(tmp_path, production):
    # when
    done = kami(tmp_path / "fresh", "doctor", **production)
    # then
    assert done.returncode == 1
    assert "FAIL  database:" in done.stdout and "run `kami migrate`" in done.stdout


def test_the_sandbox_enabled_in_production_fails(demo_shop, production):
    # given the demo shop as it is, the sandbox enabled
    # when
    done = kami(demo_shop, "doctor", **production)
    # then
    assert done.returncode == 1
    assert failed_lines(done) == ["FAIL  gateway sandbox: the sandbox pays any order for free: kami gateway set sandbox --disable"]


def test_deliveries_waiting_with_no_worker_fail(shop, production):
    # given a delivery due ten minutes ago that no worker sent
    made = kami(shop, "shell", "-c", "from datetime import timedelta; from kami.core import clock; "
                "from kami.delivery.models import OutboxMessage as M; t = clock.now() - timedelta(minutes=10); "
                "M.objects.create(kind='admin_alert', channel='log', target='-', dedupe_key='doctor-test', next_attempt_at=t, created_at=t)")
    assert made.returncode == 0, made.stderr[-2000:]
    # when
    done = kami(shop, "doctor", **production)
    # then
    assert done.returncode == 1
    assert failed_lines(done)[0].startswith("FAIL  worker: 1 delivery(ies) due 10 min ago and not sent")
    assert "is `kami worker` running?" in failed_lines(done)[0]


def test_a_full_disk_fails(shop, production):
    # when the free space asked for is more than any disk here has
    done = kami(shop, "doctor", "--min-free-mb", str(10**9), **production)
    # then
    assert done.returncode == 1
    assert failed_lines(done)[0].startswith("FAIL  disk:") and "free some space" in failed_lines(done)[0]
