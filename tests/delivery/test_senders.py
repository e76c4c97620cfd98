"""A worker sends a pass's messages over several connections at once (kami/delivery/worker.py
`Senders`, KAMI_WORKER_SENDERS): a remote relay takes 50–500 ms per email, and one at a time a
drop's emails took minutes. Against a real SMTP server that holds each message until several are
in flight at once, so a worker that sent one at a time could not pass."""
from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from django.db import connection

from kami.delivery import channels
from kami.delivery.channels import channel_get
from kami.delivery.models import DeliveryAttempt, OutboxMessage
from kami.delivery.services import outbox_enqueue
from kami.delivery.worker import Senders, run_pass
from tests.delivery.conftest import run_forever_until, smtp_serving
from tests.delivery.test_smtp_reuse import Sessions, assert_each_delivered, key_orders

ROOT = Path(__file__).resolve().parents[2]
AT_ONCE = 4


class Overlapping(Sessions):
    """A Sessions mailbox whose DATA answer waits until `at_once` messages were in flight together
    (or `patience` seconds passed): `peak` is the most that ever were."""

    def __init__(self, at_once: int = AT_ONCE, patience: float = 3.0):
        super().__init__()
        self.at_once, self.patience = at_once, patience
        self.in_flight = self.peak = 0

    async def handle_DATA(self, server, session, envelope):
        self.in_flight += 1  # the server's one event loop: no lock needed
        self.peak = max(self.peak, self.in_flight)
        deadline = time.monotonic() + self.patience
        while self.peak < self.at_once and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        self.in_flight -= 1
        return await super().handle_DATA(server, session, envelope)


@pytest.fixture
def smtp(settings):
    yield from smtp_serving(settings, Overlapping())


@pytest.fixture
def senders():
    lanes = Senders(AT_ONCE)
    yield lanes
    lanes.close()


@pytest.mark.django_db(transaction=True)
def test_a_pass_sends_over_several_connections_at_once_and_each_email_once(smtp, senders, fulfilled_order,
                                                                          make_product):
    # given
    rows = key_orders(fulfilled_order, make_product, count=12)
    # when
    started = time.monotonic()
    outcomes = run_pass(worker_id="w1", senders=senders)
    # then: four in flight together, each over its own SMTP session, each email once and recorded once
    assert dict(outcomes) == {"sent": 12}
    assert smtp.peak == AT_ONCE and smtp.connections() == AT_ONCE
    assert time.monotonic() - started < smtp.patience  # nobody waited for a fourth that never came
    assert_each_delivered(smtp, rows)
    assert DeliveryAttempt.objects.filter(ok=True).count() == 12
    assert {w for w in DeliveryAttempt.objects.values_list("worker", flat=True)} == {"w1"}


@pytest.mark.django_db(transaction=True)
def test_a_refused_and_a_deferred_recipient_fail_alone_in_their_own_sender(smtp, senders, fulfilled_order,
                                                                          make_product):
    # given: among 8 buyers, one mailbox does not exist and one says try later
    rows = key_orders(fulfilled_order, make_product, count=8)
    smtp.refuse[rows[1].target] = "550 5.1.1 no such user"
    smtp.refuse[rows[6].target] = "451 4.3.0 try again later"
    smtp.at_once = 2  # those two never reach DATA
    # when
    outcomes = run_pass(worker_id="w1", senders=senders)
    # then
    assert dict(outcomes) == {"sent": 6, "manual": 1, "failed": 1}
    statuses = {r.target: (r.status, r.attempts) for r in OutboxMessage.objects.filter(kind="order_keys")}
    assert statuses.pop(rows[1].target) == ("manual", 1)
    assert statuses.pop(rows[6].target) == ("failed", 1)
    assert set(statuses.values()) == {("sent", 1)}
    assert_each_delivered(smtp, [r for i, r in enumerate(rows) if i not in (1, 6)])
    assert DeliveryAttempt.objects.count() == 8


class Stopper:
    """A channel that accepts each message (after a moment, so the senders overlap) and sets
    `stop` once `after` were accepted."""

    name = "stopper"

    def __init__(self, stop: threading.Event, after: int):
        self.stop, self.after, self.accepted, self.lock = stop, after, [], threading.Lock()

    def send(self, message):
        time.sleep(0.05)
        with self.lock:
            self.accepted.append(message.id)
            if len(self.accepted) >= self.after:
                self.stop.set()


def queue_for(channel: str, count: int) -> list[int]:
    return [outbox_enqueue(kind="admin_alert", channel=channel, target="x", dedupe_key=f"{channel}-{i}",
                           payload={"subject": "s"}).id for i in range(count)]


@pytest.mark.django_db(transaction=True)
def test_a_stop_lets_each_sender_finish_its_message_and_hands_the_rest_back(senders, monkeypatch):
    # given
    channel_get("log")  # builtins loaded, then the fake beside them
    stop = threading.Event()
    fake = Stopper(stop, after=2)
    monkeypatch.setitem(channels._registry, fake.name, fake)
    ids = queue_for(fake.name, 20)
    # when
    outcomes = run_pass(worker_id="w1", senders=senders, stop_event=stop)
    # then: what went out is recorded sent, the rest is back in the queue untouched, nothing twice
    sent = set(OutboxMessage.objects.filter(status="sent").values_list("id", flat=True))
    assert sent == set(fake.accepted) and len(fake.accepted) == len(set(fake.accepted))
    assert 2 <= len(sent) <= AT_ONCE + 1 and dict(outcomes) == {"sent": len(sent)}
    rest = OutboxMessage.objects.exclude(id__in=sent)
    assert rest.count() == 20 - len(sent)
    assert set(rest.values_list("status", "attempts", "lease_token", "lease_until")) == {("pending", 0, "", None)}
    assert set(ids) == set(OutboxMessage.objects.values_list("id", flat=True))


class Breaking:
    """A channel whose `breaks`-th message ends its sender's thread with an error the worker does
    not handle as a delivery failure (SystemExit); the others are accepted after a moment."""

    name = "breaking"

    def __init__(self, breaks: int):
        self.breaks, self.calls, self.accepted, self.lock = breaks, 0, [], threading.Lock()

    def send(self, message):
        with self.lock:
            self.calls += 1
            breaking = self.calls == self.breaks
        if breaking:
            raise SystemExit("sender ended")
        time.sleep(0.05)
        with self.lock:
            self.accepted.append(message.id)


@pytest.mark.django_db(transaction=True)
def test_an_error_in_one_sender_is_raised_after_the_others_finished_and_what_went_out_is_recorded(
        senders, monkeypatch):
    # given
    channel_get("log")
    fake = Breaking(breaks=3)
    monkeypatch.setitem(channels._registry, fake.name, fake)
    queue_for(fake.name, 12)
    # when
    with pytest.raises(SystemExit, match="sender ended"):
        run_pass(worker_id="w1", senders=senders)
    # then: every accepted message is recorded sent; the one cut off stays leased (its lease lapses,
    # as after a crash), the rest of its sender's share is handed back; the other senders did all theirs
    rows = list(OutboxMessage.objects.all())
    sent = {r.id for r in rows if r.status == "sent"}
    assert sent == set(fake.accepted) and fake.calls == len(sent) + 1
    [cut_off] = [r for r in rows if r.status == "sending"]
    assert cut_off.attempts == 0 and cut_off.lease_token and cut_off.lease_until is not None
    handed_back = [r for r in rows if r.status == "pending"]
    assert len(handed_back) <= 2 and all((r.attempts, r.lease_token, r.lease_until) == (0, "", None)
                                         for r in handed_back)
    assert len(sent) + 1 + len(handed_back) == 12
    assert DeliveryAttempt.objects.filter(ok=True).count() == len(sent)


@pytest.mark.django_db(transaction=True)
def test_closed_senders_end_their_threads_and_database_connections(senders, smtp, fulfilled_order, make_product):
    # given: a pass that used every sender (each then holds its own connection)
    key_orders(fulfilled_order, make_product, count=8)
    before = database_connections()
    assert dict(run_pass(worker_id="w1", senders=senders)) == {"sent": 8}
    if connection.vendor != "sqlite":
        assert settles_at(before + AT_ONCE - 1)
    # when
    senders.close()
    # then
    assert not any(t.is_alive() for t in senders.threads)
    if connection.vendor != "sqlite":
        assert settles_at(before)


def settles_at(expected: int) -> bool:
    """Whether this database's session count reaches `expected` within 5 s (a server notices a
    closed connection, or drops a lease keeper's, a moment later)."""
    deadline = time.monotonic() + 5
    while database_connections() != expected and time.monotonic() < deadline:
        time.sleep(0.05)
    return database_connections() == expected


def database_connections() -> int:
    """Sessions on this test database, other than system ones (PostgreSQL, MariaDB); 0 on SQLite."""
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()")
        elif connection.vendor == "mysql":
            cursor.execute("SELECT count(*) FROM information_schema.processlist WHERE db = DATABASE()")
        else:
            return 0
        return cursor.fetchone()[0]


@pytest.mark.django_db(transaction=True)
def test_run_forever_sends_with_its_senders_and_leaves_no_thread_behind(smtp, fulfilled_order, make_product):
    # given
    key_orders(fulfilled_order, make_product, count=6)
    # when
    errors = run_forever_until(lambda: len(smtp.messages) >= 6, senders=AT_ONCE)
    # then
    assert errors == []
    assert smtp.peak == AT_ONCE and len(set(smtp.message_ids())) == 6
    assert not [t for t in threading.enumerate() if t.name.startswith("kami-sender-")]


@pytest.mark.sqlite_only
@pytest.mark.parametrize(("name", "value", "fix"), [
    ("KAMI_WORKER_SENDERS", "0", "give a whole number from 1 to 64"),
    ("KAMI_WORKER_SENDERS", "65", "give a whole number from 1 to 64"),
    ("KAMI_WORKER_SENDERS", "four", "give a whole number from 1 to 64"),
    ("KAMI_WORKER_SENDERS", "-1", "give a whole number from 1 to 64"),
    ("KAMI_EMAIL_RATE", "-1", "give the emails a second your mail provider allows"),
    ("KAMI_EMAIL_RATE", "fast", "give the emails a second your mail provider allows"),
    ("KAMI_EMAIL_RATE", "nan", "give the emails a second your mail provider allows"),
])
def test_a_bad_sending_setting_is_refused_with_the_fix(name, value, fix, tmp_path):
    env = {**os.environ, name: value, "KAMI_DATA_DIR": str(tmp_path)}
    env.pop("DATABASE_URL", None)
    done = subprocess.run([sys.executable, "-m", "kami", "worker", "--help"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    assert f"{name}={value!r}: {fix}" in done.stderr


@pytest.mark.sqlite_only
@pytest.mark.parametrize("value", ["0", "65", "x"])
def test_a_bad_senders_option_is_refused_with_the_fix(value, tmp_path):
    env = {**os.environ, "KAMI_DATA_DIR": str(tmp_path)}
    env.pop("DATABASE_URL", None)
    done = subprocess.run([sys.executable, "-m", "kami", "worker", "--once", "--senders", value], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    assert f"--senders: {value!r}: give a whole number from 1 to 64" in done.stderr


@pytest.mark.django_db(transaction=True)
def test_a_rate_limit_spaces_the_emails_of_every_sender(smtp, senders, settings, fulfilled_order, make_product):
    # given: a provider that allows 20 emails a second, and ten buyers
    settings.KAMI_EMAIL_RATE = 20
    smtp.at_once = 1  # one at a time is what the limit makes of them
    rows = key_orders(fulfilled_order, make_product, count=10)
    # when
    started = time.monotonic()
    outcomes = run_pass(worker_id="w1", senders=senders)
    # then: each email once, and the tenth not before its slot, 9 × 50 ms after the first
    assert dict(outcomes) == {"sent": 10}
    assert time.monotonic() - started >= 9 / 20
    assert_each_delivered(smtp, rows)


def test_the_pace_gives_each_email_its_own_slot_across_threads():
    from kami.delivery.channels.email import Pace

    pace, started, done = Pace(), time.monotonic(), []
    assert pace.wait(0) == 0.0  # no limit: no wait

    def sender():
        for _ in range(4):
            pace.wait(50)
            done.append(time.monotonic())

    threads = [threading.Thread(target=sender) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # twelve slots 20 ms apart: the last no sooner than 11 × 20 ms after the first (at once)
    assert len(done) == 12 and max(done) - started >= 11 / 50
