"""Gateway settings are read once per process per KAMI_GATEWAY_CACHE_SECONDS on the notify path
(issue 9); a change made in this process is seen at once, one made elsewhere within the TTL."""
from __future__ import annotations

import time

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from kami.core.errors import NotFound
from kami.payments.models import GatewayAccount
from kami.payments.registry import gateway_cached, gateway_get
from tests.payments.epay_play import KEY, enable_epay

pytestmark = pytest.mark.django_db(transaction=True)  # the cache keeps only reads made in autocommit


def test_the_account_is_read_once_then_served_from_the_process(settings):
    # given
    settings.KAMI_GATEWAY_CACHE_SECONDS = 60
    enable_epay()
    gateway_get("epay")
    # when
    with CaptureQueriesContext(connection) as queries:
        gateway = gateway_get("epay")
    # then
    assert len(queries) == 0 and gateway.secrets["key"] == KEY


def test_a_change_made_in_this_process_is_seen_at_once(settings):
    # given a cached, enabled gateway
    settings.KAMI_GATEWAY_CACHE_SECONDS = 60
    enable_epay()
    gateway_get("epay")
    # when it is disabled, then given a new key
    from kami.payments.services import gateway_configure
    gateway_configure(name="epay", values={}, enable=False, actor="test")
    # then
    with pytest.raises(NotFound):
        gateway_get("epay")
    gateway_configure(name="epay", values={"key": "another-key-0123456789"}, enable=True, actor="test")
    assert gateway_get("epay").secrets["key"] == "another-key-0123456789"


def test_a_change_made_by_another_process_is_seen_within_the_ttl(settings):
    # given a cached, enabled gateway
    settings.KAMI_GATEWAY_CACHE_SECONDS = 0.3
    enable_epay()
    gateway_get("epay")
    # when another process disables it (a write this process's cache never hears of)
    GatewayAccount.objects.filter(name="epay").update(enabled=False)
    # then it is still served until the TTL runs out, and refused after
    gateway_get("epay")
    time.sleep(0.35)
    with pytest.raises(NotFound):
        gateway_get("epay")


def test_reads_inside_a_transaction_are_not_kept(settings):
    # given
    settings.KAMI_GATEWAY_CACHE_SECONDS = 60
    enable_epay()
    from django.db import transaction
    # when the account is read inside a transaction that then rolls back its change
    with transaction.atomic():
        GatewayAccount.objects.filter(name="epay").update(enabled=False)
        with pytest.raises(NotFound):
            gateway_get("epay")
        transaction.set_rollback(True)
    # then the rolled-back state was not cached
    assert gateway_get("epay").name == "epay"


def test_the_event_loops_look_never_reads_the_database(settings, monkeypatch):
    # given a cached account (kami/asgi.py asks gateway_cached on its loop, where no query may run)
    settings.KAMI_GATEWAY_CACHE_SECONDS = 60
    enable_epay()
    gateway_get("epay")
    with CaptureQueriesContext(connection) as queries:
        # when it is fresh, then when its time has passed
        fresh = gateway_cached("epay")
        monkeypatch.setattr(time, "monotonic", lambda: float("inf"))
        stale = gateway_cached("epay")
    # then the fresh one is served, the stale one left to gateway_get, and neither read a row
    assert fresh.secrets["key"] == KEY and stale is None and len(queries) == 0
