"""Fixtures for the payment tests: a clock that is always put back, a loopback Epay site."""
from __future__ import annotations

import pytest

from kami.core import clock
from kami.payments.models import Notification
from tests.payments.epay_play import KEY, PID, stored_text
from tests.payments.fake_epay import FakeEpay


@pytest.fixture
def clock_travel():
    """`clock_travel(timedelta)` moves Kami's clock; it is back to real time after the test."""
    try:
        yield clock.travel
    finally:
        clock.travel(None)


@pytest.fixture
def fake_epay():
    site = FakeEpay(pid=PID, key=KEY).start()
    try:
        yield site
    finally:
        site.stop()


@pytest.fixture
def key_never_stored():
    """After the test: no stored notification, whatever its result, holds the merchant key."""
    yield
    assert not [row.pk for row in Notification.objects.all() if KEY in stored_text(row)]
