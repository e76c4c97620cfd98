"""What a forged notification can cost: a capped row, then nothing but a counter, and the rows
go after their retention. A notification that verifies is still kept whole."""
from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.cache import cache
from django.test import Client

from kami.core import clock
from kami.fulfilment.backfill import sweep
from kami.fulfilment.notify import STORED_BODY_MAX
from kami.orders.models import Order
from kami.payments.models import Notification
from tests.payments.epay_play import enable_epay, last_notification, notify, paid_params, stocked_order

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def fresh_counters():
    cache.clear()
    yield
    cache.clear()


def forged(size: int = 10) -> dict:
    return {"out_trade_no": "1", "money": "1.00", "sign": "0" * 32, "pad": "x" * size}


def test_a_2_mb_forgery_is_stored_cut_to_the_cap_with_its_size(client):
    # given
    enable_epay()
    # when
    response = notify(client, forged(2_000_000), method="POST")
    # then
    row = last_notification()
    assert (response.status_code, row.result, row.verified) == (400, "rejected", False)
    assert len(row.body) <= STORED_BODY_MAX + 200 and "characters in all" in row.body
    assert row.body.rsplit("[", 1)[1].startswith("… cut: 2000")  # the full size, noted


def test_a_verified_notification_is_kept_whole_however_long(client, make_product):
    # given a real notification carrying an extra signed field longer than the cap
    enable_epay()
    order = stocked_order(client, make_product)
    params = paid_params(order_no=order["order_no"], money=order["amount"], param="p" * (STORED_BODY_MAX + 10))
    # when
    response = notify(client, params, method="POST")
    # then
    row = last_notification()
    assert (response.content, row.verified, row.result) == (b"success", True, "fulfilled")
    assert "p" * (STORED_BODY_MAX + 10) in row.body and "characters in all" not in row.body


def test_past_the_limit_forgeries_from_one_address_are_refused_and_not_stored(client, make_product, settings):
    # given
    settings.KAMI_NOTIFY_REJECTED_LIMIT = 3
    enable_epay()
    order = stocked_order(client, make_product)
    # when one address sends ten forgeries
    answers = [notify(client, forged(), method="POST") for _ in range(10)]
    # then three are stored, the rest only answered "fail"
    assert {(a.status_code, a.content) for a in answers} == {(400, b"fail")}
    assert Notification.objects.count() == 3
    # and a real notification from the same address still goes through, and is stored
    real = notify(client, paid_params(order_no=order["order_no"], money=order["amount"]), method="POST")
    assert real.content == b"success" and Order.objects.get(order_no=order["order_no"]).status == "fulfilled"
    assert (Notification.objects.count(), last_notification().verified) == (4, True)
    # and another address is stored as before
    Client(REMOTE_ADDR="192.0.2.7").post("/pay/epay/notify", forged(), content_type="application/x-www-form-urlencoded")
    assert last_notification().remote_addr == "192.0.2.7"


def test_the_sweep_prunes_old_rejected_rows_and_keeps_verified_ones(client, make_product, settings, clock_travel):
    # given an old forgery, an old real notification, and a recent forgery
    settings.KAMI_NOTIFY_REJECTED_KEEP_DAYS = 30
    enable_epay()
    order = stocked_order(client, make_product)
    notify(client, forged(), method="POST")
    notify(client, paid_params(order_no=order["order_no"], money=order["amount"]), method="POST")
    clock_travel(timedelta(days=31))
    notify(client, forged(), method="POST")
    # when
    result = sweep()
    # then
    kept = list(Notification.objects.order_by("id").values_list("verified", "result"))
    assert result["pruned"] == 1 and kept == [(True, "fulfilled"), (False, "rejected")]
    assert Notification.objects.filter(received_at__lt=clock.now() - timedelta(days=30), verified=False).count() == 0
