"""`kami keys rotate-data-key` (kami.ops.rotation): a new data key, every stored key re-encrypted
under it while the shop sells, a run killed half-way and resumed, the old key retired only once
nothing uses it, and fingerprints that never move. Run on each engine (KAMI_TEST_DATABASE_URL):
the batches lock rows beside sales that claim with SKIP LOCKED.

Each test keeps its keyring in a data dir file (KAMI_DATA_KEY emptied), as a shop made by
`kami demo` or `kami serve` does: the rotation rewrites that file, and this test process, like
a running web or worker process, reads it again when it changes."""
from __future__ import annotations

import io

import base64
import os
import pty
import queue
import re
import subprocess
import sys
import threading
from collections import Counter
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.test import Client

from kami.core.crypto import Keyring, keyring
from kami.ops.doctor import data_key_check
from kami.orders.models import Order, OrderKey
from kami.payments.models import GatewayAccount
from kami.payments.registry import secrets_decrypt
from kami.stock.models import Key
from kami.stock.vault import SHARED_AAD, key_fingerprint, key_open
from kami.telegram.config import bot_token
from kami.telegram.services import bot_settings_set
from kami.stock.jobfiles import file_open
from kami.stock.jobs import import_job_create
from kami.stock.models import ImportFileChunk, ImportJob
from kami.webhooks.models import Endpoint
from kami.webhooks.services import endpoint_create, endpoint_secret_rotate
from kami.webhooks.signing import secret_open
from tests.factories import add_keys, make_orders_side_by_side
from tests.faults.processes import ROOT, database_url, kami_run, kami_start, kill, wait_until
from tests.ops.test_backup_restore import wipe
from tests.sandbox_play import enable_sandbox, sandbox_notify
from tests.stock.helpers import import_lines

pytestmark = [pytest.mark.django_db(transaction=True)]
OLD = "ktest:" + base64.b64encode(b"\x01" * 32).decode()  # tests/settings.py's keyring, now in a file


@pytest.fixture
def data_dir(tmp_path, monkeypatch) -> Path:
    """A data dir whose `data_key` file holds the test keyring; this process reads it from there."""
    path = tmp_path / "var"
    path.mkdir(mode=0o700)
    (path / "data_key").write_text(OLD + "\n")
    monkeypatch.setenv("KAMI_DATA_KEY", "")
    monkeypatch.setenv("KAMI_DATA_DIR", str(path))
    return path


def env_for(data_dir: Path) -> dict:
    return {"DATABASE_URL": database_url(), "KAMI_DATA_DIR": str(data_dir), "KAMI_DATA_KEY": ""}


def rotate(*args: str) -> str:
    """`kami keys rotate-data-key ARGS` in this process; its stdout."""
    out = StringIO()
    call_command("keys", "rotate-data-key", *args, stdout=out, stderr=StringIO())
    return out.getvalue()


def sizes() -> tuple[int, int]:
    """(keys, buyers): smaller on SQLite, which has one writer."""
    return (1500, 300) if connection.vendor != "sqlite" else (600, 120)


def buy_in_threads(orders, *, threads: int = 8) -> threading.Thread:
    """Send every order's paid notification from `threads` threads, each with its own client and
    database connection, in the background; the returned thread ends when all are sent."""
    work = queue.SimpleQueue()
    for order in orders:
        work.put(order)
    failures: list = []

    def sender():
        client = Client()
        try:
            while True:
                try:
                    order = work.get_nowait()
                except queue.Empty:
                    return
                response = sandbox_notify(client, order_no=order.order_no, amount=str(order.amount))
                if response.status_code != 200:
                    failures.append((order.order_no, response.status_code))
        finally:
            connection.close()  # this thread's own connection

    def run():
        pool = [threading.Thread(target=sender) for _ in range(threads)]
        for t in pool:
            t.start()
        for t in pool:
            t.join()

    runner = threading.Thread(target=run)
    runner.failures = failures
    runner.start()
    return runner


def on_key(key_id: str) -> int:
    return Key.objects.filter(key_id=key_id).count()


def fulfilled(product) -> int:
    return Order.objects.filter(product=product, status="fulfilled").count()


@pytest.mark.slow
@pytest.mark.concurrency
def test_rotation_while_eight_threads_buy_killed_half_way_then_resumed(data_dir, make_product, tmp_path):
    # given stock under the old data key, and paid-for orders about to arrive from 8 buyers at once
    n_keys, n_buyers = sizes()
    enable_sandbox()
    product = make_product(max_qty=3)
    texts = [f"ROT-{i:05d}" for i in range(n_keys)]
    add_keys(product, texts)
    assert on_key("ktest") == n_keys
    orders = make_orders_side_by_side(product, [1 + i % 3 for i in range(n_buyers)])
    # when the rotation runs as its own process, the buyers pay once it has begun moving keys,
    # and it is killed half-way, after some sales went through beside it
    log = tmp_path / "rotate.log"
    pause = "0.2" if connection.vendor == "sqlite" else "0.1"  # a few seconds in all: room to kill it half-way
    rotation = kami_start(["keys", "rotate-data-key", "--batch-size", "20", "--pause", pause], env=env_for(data_dir),
                          log=log)
    buyers = None
    try:
        try:
            new = wait_until(lambda: _new_first_key(data_dir), timeout=60, what="the rotation to add its key")
            wait_until(lambda: on_key(new), timeout=60, what=f"the first keys under {new}")
            buyers = buy_in_threads(orders)
            wait_until(lambda: on_key(new) >= n_keys // 3 and fulfilled(product), timeout=120,
                       what=f"a third of the keys under {new}, and a sale")
        finally:
            kill(rotation)
        moved_when_killed = on_key(new)
        assert 0 < moved_when_killed < n_keys, log.read_text()[-2000:]
        # (the killed batch rolled back whole: every key, under either data key, opens as imported)
        assert sorted(key_open(key).reveal() for key in Key.objects.filter(product=product)) == texts
        # and resumed by running the command again, sales still going on
        resumed = kami_run(["keys", "rotate-data-key", "--batch-size", "50"], env=env_for(data_dir), timeout=300)
    finally:
        if buyers is not None:
            buyers.join(timeout=300)  # before the test's teardown empties the tables under them
    # then it resumed (no third key was added) and finished
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "added data key" not in resumed.stdout
    assert f"under data key {new!r}" in resumed.stdout
    assert "no stored row uses data key(s) ktest" in resumed.stdout
    assert list(Keyring.parse((data_dir / "data_key").read_text()).keys) == [new, "ktest"]
    assert on_key(new) == n_keys and on_key("ktest") == 0
    # and every key opens, under the new key, as what was imported
    assert keyring().primary_id == new
    stored = {key.pk: key_open(key).reveal() for key in Key.objects.filter(product=product)}
    assert sorted(stored.values()) == texts
    # and no key was sold twice, and what was sold is exactly what the fulfilled orders hold
    assert not buyers.failures
    statuses = Counter(Order.objects.filter(product=product).values_list("status", flat=True))
    assert statuses == {"fulfilled": n_buyers}
    links = Counter(OrderKey.objects.filter(key__product=product).values_list("key_id", flat=True))
    assert not [k for k, n in links.items() if n > 1], "a key was linked to two orders"
    sold = Key.objects.filter(product=product, status="sold").count()
    assert sold == sum(links.values()) == sum(o.quantity for o in Order.objects.filter(product=product))
    # and an import of the same keys finds every one a duplicate, across old and new data keys
    report = import_lines(product, texts + ["ROT-NEW"])
    assert (report.imported, report.duplicate_stored) == (1, n_keys)
    assert Key.objects.get(fingerprint=key_fingerprint("ROT-NEW")).key_id == new


def _new_first_key(data_dir: Path) -> str | None:
    first = next(iter(Keyring.parse((data_dir / "data_key").read_text()).keys))
    return first if first != "ktest" else None


@pytest.mark.sqlite_only
def test_retire_is_refused_while_a_row_uses_the_old_key_and_fingerprints_outlive_it(data_dir, make_product):
    # given keys under the old data key, a rotation that added a new one and moved them, and one
    # key written since under the old key (a process still on the old keyring)
    product = make_product()
    import_lines(product, ["RET-1", "RET-2", "RET-3"])
    fingerprints = set(Key.objects.values_list("fingerprint", flat=True))
    rotate()
    new = keyring().primary_id
    old_ring = Keyring.parse(OLD)
    key_id, blob = old_ring.encrypt("RET-4", aad=b"kami:key:v2:%d:%s" % (product.pk, key_fingerprint("RET-4").encode()))
    Key.objects.create(product=product, key_id=key_id, ciphertext=blob, fingerprint=key_fingerprint("RET-4"))
    # then kami doctor says the rotation is unfinished
    check = data_key_check(database_ok=True)
    assert check.status == "warn"
    assert "still sealed with older data key(s) ktest: run `kami keys rotate-data-key --resume`" in check.detail
    # when / then: retiring the old key is refused, the keyring unchanged
    with pytest.raises(CommandError, match=r"data key 'ktest' still seals 1 stored row\(s\): run `kami keys "
                                           r"rotate-data-key --resume`"):
        rotate("--retire", "ktest")
    assert "ktest" in keyring().keys
    # when the rotation is resumed, then retiring works
    assert "re-encrypted 1 key(s)" in rotate("--resume")
    assert "retired data key 'ktest'" in rotate("--retire", "ktest")
    assert list(keyring().keys) == [new]
    # and every key still opens, and the fingerprints did not move: an import finds them all
    assert sorted(key_open(k).reveal() for k in Key.objects.all()) == ["RET-1", "RET-2", "RET-3", "RET-4"]
    assert fingerprints < set(Key.objects.values_list("fingerprint", flat=True))
    report = import_lines(product, ["RET-1", "RET-2", "RET-3", "RET-4", "RET-5"])
    assert (report.imported, report.duplicate_stored) == (1, 4)
    # and the next rotation adds a key and moves everything to it, the fingerprint key still the same
    rotate()
    assert len(keyring().keys) == 2 and keyring().primary_id != new
    assert keyring().fingerprint_key == old_ring.fingerprint_key
    assert set(Key.objects.values_list("key_id", flat=True)) == {keyring().primary_id}


@pytest.mark.sqlite_only
def test_gateway_secrets_bot_token_and_old_format_keys_move_too_and_a_rerun_changes_nothing(data_dir, make_product):
    # given a gateway's secrets, the bot token, a webhook endpoint's current and previous secrets
    # and a key in the old shared-AAD format, all under the old key
    enable_sandbox()
    before = {a.name: secrets_decrypt(a) for a in GatewayAccount.objects.all()}
    bot_settings_set(token="123456:ABC-secret", actor="test")
    first = endpoint_create(url="https://erp.example.com/hooks", events=["order.paid"], actor="test")
    second = endpoint_secret_rotate(endpoint_id=first.endpoint.pk, actor="test")
    queued = import_job_create(product=make_product(), stream=io.BytesIO(b"QUEUED-1\nQUEUED-2\n"), filename="k.txt",
                               actor="test")
    product = make_product()
    old_id, blob = keyring().encrypt("LEGACY-1", aad=SHARED_AAD)
    Key.objects.create(product=product, key_id=old_id, ciphertext=blob, fingerprint=key_fingerprint("LEGACY-1"),
                       seal=Key.Seal.SHARED)
    # when
    out = rotate()
    # then all of them are under the new key, the key in the bound format, and all open
    new = keyring().primary_id
    assert "re-encrypted 1 key(s) and 5 secret(s)" in out
    assert set(GatewayAccount.objects.values_list("secrets_key_id", flat=True)) == {new}
    assert {a.name: secrets_decrypt(a) for a in GatewayAccount.objects.all()} == before
    assert bot_token() == "123456:ABC-secret"
    endpoint = Endpoint.objects.get()
    assert (endpoint.secret_key_id, endpoint.previous_key_id) == (new, new)
    assert secret_open(endpoint.secret_key_id, endpoint.secret_ciphertext) == second.secret
    assert secret_open(endpoint.previous_key_id, endpoint.previous_ciphertext) == first.secret
    assert set(ImportFileChunk.objects.values_list("key_id", flat=True)) == {new}
    assert file_open(ImportJob.objects.get(pk=queued.pk).upload_id).read() == b"QUEUED-1\nQUEUED-2\n"
    key = Key.objects.get()
    assert (key.key_id, key.seal) == (new, Key.Seal.BOUND) and key_open(key).reveal() == "LEGACY-1"
    # and running it again to resume moves nothing and adds no key
    ciphertext = bytes(key.ciphertext)
    assert "re-encrypted 0 key(s) and 0 secret(s)" in rotate("--resume")
    assert bytes(Key.objects.get().ciphertext) == ciphertext and len(keyring().keys) == 2
    # and the status says what each data key seals
    status = rotate("--status")
    assert f"  {new:<16} newest, seals new keys" in status and "ktest " in status
    assert "no stored row uses data key(s) ktest any more" in status


@pytest.mark.sqlite_only
def test_a_terminal_shows_a_progress_bar_of_the_keys_moved(data_dir, make_product):
    # given 60 keys, and the command's stderr on a terminal
    product = make_product()
    import_lines(product, [f"BAR-{i}" for i in range(60)])
    main, terminal = pty.openpty()
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "kami.settings", **env_for(data_dir), "COLUMNS": "120"}
    # when
    with subprocess.Popen([sys.executable, "-m", "kami", "keys", "rotate-data-key", "--batch-size", "10", "--pause",
                           "0.1"], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=terminal) as rotation:
        os.close(terminal)
        drawn = b""
        while chunk := _read_terminal(main):
            drawn += chunk
        out = rotation.stdout.read().decode()
    os.close(main)
    # then the bar counted the keys up to all of them, and the summary went to stdout
    assert rotation.returncode == 0, drawn.decode(errors="replace")[-2000:]
    screen = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", drawn.decode(errors="replace"))
    assert "re-encrypting" in screen and "60/60" in screen
    assert "re-encrypted 60 key(s)" in out


def _read_terminal(fd: int) -> bytes:
    try:
        return os.read(fd, 65536)
    except OSError:  # EIO: the other end closed
        return b""


@pytest.mark.sqlite_only
def test_a_key_that_does_not_open_stops_the_rotation_with_one_line_and_the_rest_resumes(data_dir, make_product):
    # given three keys, the middle one's ciphertext replaced by the first one's (tampered)
    product = make_product()
    import_lines(product, ["BAD-1", "BAD-2", "BAD-3"])
    first, middle, last = Key.objects.order_by("id")
    Key.objects.filter(pk=middle.pk).update(ciphertext=first.ciphertext)
    # when / then: the rotation names the row and stops; nothing of that batch was written
    with pytest.raises(CommandError, match=rf"key #{middle.pk} \({middle.fingerprint[:8]}\) of product #{product.pk} "
                                           r"does not open: .* The rotation stopped there .* run `kami keys "
                                           r"rotate-data-key --resume`$"):
        rotate("--batch-size", "1")
    new = keyring().primary_id
    assert dict(Key.objects.values_list("pk", "key_id")) == {first.pk: new, middle.pk: "ktest", last.pk: "ktest"}
    # when the row is restored (here: its own ciphertext put back), the resume finishes
    Key.objects.filter(pk=middle.pk).update(ciphertext=middle.ciphertext)
    assert "re-encrypted 2 key(s)" in rotate("--resume")
    assert [key_open(k).reveal() for k in Key.objects.order_by("id")] == ["BAD-1", "BAD-2", "BAD-3"]


@pytest.mark.sqlite_only
@pytest.mark.parametrize("args, extra_env, message", [
    (["--status"], {"KAMI_DATA_DIR": "empty"}, "no data key at "),
    (["--retire", "knope"], {}, "data key 'knope' is not in the keyring (it holds k"),
    (["--retire", "NEW"], {}, "is the newest one, which seals every new key: it cannot be retired"),
    ([], {"KAMI_DATA_KEY": OLD}, "the keyring comes from KAMI_DATA_KEY, which Kami cannot rewrite"),
    (["--batch-size", "0"], {}, "--batch-size 0: give at least 1"),
    (["--print", "--resume"], {}, "--print and --resume"),
])
def test_bad_input_is_one_line_naming_the_fix(data_dir, tmp_path, args, extra_env, message):
    # given a rotated keyring (its newest key stands in for NEW)
    rotate()
    new = keyring().primary_id
    env = env_for(data_dir)
    if extra_env.get("KAMI_DATA_DIR") == "empty":
        extra_env = {"KAMI_DATA_DIR": str(tmp_path / "empty")}
    # when
    done = kami_run(["keys", "rotate-data-key", *[new if a == "NEW" else a for a in args]], env={**env, **extra_env})
    # then
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], done.stderr
    assert not (tmp_path / "empty" / "data_key").exists()  # no useless new keyring made


@pytest.mark.sqlite_only
def test_a_kami_data_key_deployment_gets_the_new_value_printed_then_resumes(data_dir, make_product, monkeypatch):
    # given a shop whose keyring is in KAMI_DATA_KEY
    monkeypatch.setenv("KAMI_DATA_KEY", OLD)
    product = make_product()
    import_lines(product, ["ENV-1", "ENV-2"])
    env = {"DATABASE_URL": database_url(), "KAMI_DATA_KEY": OLD}
    # when the new keyring is printed, set, and the rotation resumed under it
    printed = kami_run(["keys", "rotate-data-key", "--print"], env=env)
    assert printed.returncode == 0, printed.stderr
    value = printed.stdout.strip()
    ring = Keyring.parse(value)
    assert list(ring.keys)[1:] == ["ktest"] and ring.fingerprint_key == keyring().fingerprint_key
    assert on_key(ring.primary_id) == 0  # printing moved nothing
    monkeypatch.setenv("KAMI_DATA_KEY", value)
    again = kami_run(["keys", "rotate-data-key", "--print"], env={**env, "KAMI_DATA_KEY": value})
    assert again.returncode == 2 and f"2 stored row(s) still wait to move to data key {ring.primary_id!r}" in again.stderr
    done = kami_run(["keys", "rotate-data-key", "--resume"], env={**env, "KAMI_DATA_KEY": value})
    # then the keys moved, open, and the old key's removal is printed once unused
    assert done.returncode == 0, done.stderr
    assert on_key(ring.primary_id) == 2 and sorted(key_open(k).reveal() for k in Key.objects.all()) == ["ENV-1", "ENV-2"]
    retired = kami_run(["keys", "rotate-data-key", "--retire", "ktest", "--print"], env={**env, "KAMI_DATA_KEY": value})
    assert retired.returncode == 0, retired.stderr
    assert list(Keyring.parse(retired.stdout.strip()).keys) == [ring.primary_id]


@pytest.mark.slow
def test_backup_and_restore_carry_the_rotated_keyring(data_dir, make_product, tmp_path, monkeypatch):
    # given keys moved to a new data key, the old one retired
    product = make_product()
    import_lines(product, ["BAK-1", "BAK-2"])
    rotate()
    rotate("--retire", "ktest")
    ring_text = (data_dir / "data_key").read_text()
    passphrase = tmp_path / "passphrase"
    passphrase.write_text("correct horse battery staple\n")
    # when the shop is backed up, its database wiped and restored into a new data dir
    backed = kami_run(["backup", str(tmp_path / "b.kamibak"), "--passphrase-file", str(passphrase)],
                      env=env_for(data_dir), timeout=120)
    assert backed.returncode == 0, backed.stderr[-3000:]
    wipe()
    new_dir = tmp_path / "restored"
    restored = kami_run(["restore", str(tmp_path / "b.kamibak"), "--passphrase-file", str(passphrase)],
                        env=env_for(new_dir), timeout=120)
    assert restored.returncode == 0, restored.stderr[-3000:]
    connection.close()
    # then the restored data dir holds the rotated keyring (fingerprint key pinned), and the keys open with it
    assert (new_dir / "data_key").read_text() == ring_text
    monkeypatch.setenv("KAMI_DATA_DIR", str(new_dir))
    assert sorted(key_open(k).reveal() for k in Key.objects.all()) == ["BAK-1", "BAK-2"]
    doctor = kami_run(["doctor"], env=env_for(new_dir), timeout=120)
    assert "opens stored keys (data key ids in use: " + keyring().primary_id in doctor.stdout, doctor.stdout
