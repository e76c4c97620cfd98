"""Short leases renewed while the worker lives (kami/delivery/leases.py): a slow send keeps its
rows, the renewal touches only the rows its claim still holds, and the token (not the lease's
end time) decides whose a row is."""
from __future__ import annotations

import time
from datetime import timedelta

import pytest

from kami.core import clock
from kami.delivery import channels
from kami.delivery.channels import channel_get
from kami.delivery.leases import LeaseKeeper, lease_surely_held, leases_renew, renew_seconds
from kami.delivery.models import OutboxMessage
from kami.delivery.services import outbox_enqueue
from kami.delivery.worker import outbox_claim, outbox_perform, run_pass

pytestmark = pytest.mark.django_db(transaction=True)


class SlowChannel:
    """Takes longer than a whole lease to send; halfway past the lease, another worker tries to
    claim the row."""

    name = "slow"

    def __init__(self):
        self.other_claimed = None

    def send(self, message):
        time.sleep(3.5)
        self.other_claimed = outbox_claim(worker_id="other", limit=10)
        time.sleep(0.5)


def queue(n: int, channel: str = "log") -> None:
    for i in range(n):
        outbox_enqueue(kind="admin_alert", channel=channel, target="x", dedupe_key=f"lease-{i}", payload={"subject": "s"})


def test_a_send_longer_than_the_lease_keeps_the_row_while_the_worker_lives(settings, monkeypatch):
    # given: a 3 s lease (renewed every second) and a send that takes 4 s
    settings.KAMI_DELIVERY_LEASE_SECONDS, settings.KAMI_DELIVERY_RENEW_SECONDS = 3, 0
    assert renew_seconds() == 1
    channel_get("log")  # builtins loaded, then the fake added beside them
    slow = SlowChannel()
    monkeypatch.setitem(channels._registry, "slow", slow)
    queue(1, channel="slow")
    # when
    outcomes = run_pass(worker_id="first")
    # then: nobody took it over mid-send; sent once, one attempt
    assert slow.other_claimed == []
    assert dict(outcomes) == {"sent": 1}
    row = OutboxMessage.objects.get()
    assert (row.status, row.attempts, row.lease_token, row.lease_until) == ("sent", 1, "", None)


def test_a_renewal_touches_only_the_rows_its_claim_still_holds():
    # given: two workers' claims, and one of the first worker's rows already sent
    queue(4)
    mine = outbox_claim(worker_id="w1", limit=2)
    theirs = outbox_claim(worker_id="w2", limit=2)
    assert len({m.lease_token for m in mine}) == 1 and mine[0].lease_token != theirs[0].lease_token
    assert outbox_perform(mine[0], worker_id="w1") == "sent"
    # when
    renewed = leases_renew(ids=[m.id for m in mine + theirs], token=mine[0].lease_token)
    # then: only the row w1 still holds
    assert renewed == 1
    # and: a worker whose lease passed to another writes nothing over it
    OutboxMessage.objects.filter(id=mine[1].id).update(lease_token="someone-else")
    assert outbox_perform(mine[1], worker_id="w1") == "lost"
    assert OutboxMessage.objects.get(id=mine[1].id).status == "sending"


def test_the_sender_trusts_its_lease_only_while_the_keeper_renews_it_in_time(settings):
    # given: a 3 s lease renewed every second, and a claim held by a keeper
    settings.KAMI_DELIVERY_LEASE_SECONDS, settings.KAMI_DELIVERY_RENEW_SECONDS = 3, 0
    queue(2)
    mine = outbox_claim(worker_id="w1", limit=2)
    claimed_until = mine[0].lease_until
    with LeaseKeeper(mine):
        deadline = time.monotonic() + 10
        while mine[0].lease_until == claimed_until and time.monotonic() < deadline:
            time.sleep(0.05)
    # then: a renewal in time moves the lease the sender sees: it sends without asking the database
    assert mine[0].lease_until > claimed_until and all(lease_surely_held(m) for m in mine)
    # when: the machine stalls past the lease (the clock jumps) before the next renewal lands
    clock.travel(timedelta(seconds=10))
    seen = [m.lease_until for m in mine]
    with LeaseKeeper(mine):
        time.sleep(renew_seconds() * 1.5)
    # then: that late renewal is not trusted (another worker could have taken a row meanwhile) …
    assert [m.lease_until for m in mine] == seen and not any(lease_surely_held(m) for m in mine)
    # … so the sender asks the database, which says the row is still its own
    assert outbox_perform(mine[0], worker_id="w1") == "sent"
    OutboxMessage.objects.filter(id=mine[1].id).update(lease_token="someone-else")
    assert outbox_perform(mine[1], worker_id="w1") == "lost"
