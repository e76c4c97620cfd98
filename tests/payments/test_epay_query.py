"""Epay's query API (`api.php?act=order`) against a loopback fake of the site."""
from __future__ import annotations

import json
import logging
from decimal import Decimal

import pytest

from kami.core.errors import KamiError, Retryable
from kami.fulfilment.checkout import order_info
from kami.fulfilment.confirm import Outcome, payment_confirm
from kami.orders.models import Order
from kami.payments.gateways import epay
from kami.payments.gateways.epay import EpayGateway
from kami.payments.interface import OrderInfo
from kami.payments.registry import gateway_get
from tests.payments.epay_play import KEY, PID, enable_epay, fixture, last_notification, notify, paid_params, stocked_order

# Tests marked sqlite_only talk to the gateway's loopback fake or parse alone: the same on every engine.

ORDER = OrderInfo(order_no="261127120012345678", amount=Decimal("29.90"), currency="CNY", subject="Steam 50",
                  email="buyer@example.com")


def site_answer(order_no: str, **changes) -> dict:
    answer = fixture("epay_query_paid")
    answer.pop("about")
    return {**answer, "out_trade_no": order_no, **changes}


def gateway_for(site, **config) -> EpayGateway:
    return EpayGateway(config={"pid": PID, "url": site.url, **config}, secrets={"key": KEY})


@pytest.mark.sqlite_only
def test_a_paid_order_comes_back_as_a_paid_notice(fake_epay):
    # given
    fake_epay.orders[ORDER.order_no] = site_answer(ORDER.order_no)
    # when
    notice = gateway_for(fake_epay).query(ORDER)
    # then
    assert (notice.order_no, notice.trade_no, notice.amount, notice.currency, notice.paid) == (
        ORDER.order_no, "2026112712001234567", Decimal("29.90"), "CNY", True)
    path = fake_epay.requests[-1]
    assert path.startswith("/api.php?") and "act=order" in path and f"pid={PID}" in path and f"key={KEY}" in path


@pytest.mark.sqlite_only
@pytest.mark.parametrize("status, paid", [("0", False), (0, False), (1, True), ("1", True), ("2", False)])
def test_status_one_alone_means_paid(fake_epay, status, paid):
    fake_epay.orders[ORDER.order_no] = site_answer(ORDER.order_no, status=status)
    assert gateway_for(fake_epay).query(ORDER).paid is paid


@pytest.mark.sqlite_only
def test_an_amount_sent_as_a_json_number_is_read_exactly(fake_epay):
    fake_epay.orders[ORDER.order_no] = site_answer(ORDER.order_no, money=29.9, trade_no=2026112712001234567)
    notice = gateway_for(fake_epay).query(ORDER)
    assert (notice.amount, notice.trade_no) == (Decimal("29.9"), "2026112712001234567")


@pytest.mark.sqlite_only
def test_an_order_the_site_does_not_know_is_none(fake_epay):
    assert gateway_for(fake_epay).query(ORDER) is None


@pytest.mark.sqlite_only
def test_a_refused_key_is_an_error_that_says_what_to_fix_without_the_key(fake_epay):
    # given
    site = EpayGateway(config={"pid": PID, "url": fake_epay.url}, secrets={"key": "wrong-key-1234"})
    # when / then
    with pytest.raises(KamiError, match="check pid and key") as caught:
        site.query(ORDER)
    assert not isinstance(caught.value, Retryable)
    assert "wrong-key-1234" not in str(caught.value)


@pytest.mark.sqlite_only
@pytest.mark.parametrize("answer", [{"out_trade_no": "someone-else"}, {"pid": "2002"}, {"pid": None}, {"money": "1e3"},
                                    {"money": None}, {"trade_no": ""}, {"trade_no": "T\x00"}, {"trade_no": True}])
def test_an_answer_that_does_not_fit_the_question_is_an_error(fake_epay, answer):
    fake_epay.orders[ORDER.order_no] = site_answer(ORDER.order_no, **answer)
    with pytest.raises(KamiError):
        gateway_for(fake_epay).query(ORDER)


@pytest.mark.sqlite_only
@pytest.mark.parametrize("mode", ["error500", "not_json", "drop"])
def test_a_site_in_trouble_is_retryable(fake_epay, mode):
    fake_epay.mode = mode
    with pytest.raises(Retryable) as caught:
        gateway_for(fake_epay).query(ORDER)
    assert KEY not in str(caught.value)


@pytest.mark.sqlite_only
def test_a_redirect_is_not_followed_and_says_where_it_points_without_the_key(fake_epay):
    # given: the site moved to https and redirects, query and all
    fake_epay.mode = "redirect"
    # when / then
    with pytest.raises(KamiError, match="redirects") as caught:
        gateway_for(fake_epay).query(ORDER)
    assert not isinstance(caught.value, Retryable)
    assert "https://pay.example/api.php" in str(caught.value)
    assert KEY not in str(caught.value)


@pytest.mark.sqlite_only
def test_a_wrong_url_is_an_error_that_names_the_setting(fake_epay):
    fake_epay.mode = "missing"
    with pytest.raises(KamiError, match="check url") as caught:
        gateway_for(fake_epay).query(ORDER)
    assert not isinstance(caught.value, Retryable)


@pytest.mark.sqlite_only
def test_a_slow_site_times_out_as_retryable(fake_epay, monkeypatch):
    monkeypatch.setattr(epay, "QUERY_TIMEOUT_SECONDS", 0.3)
    fake_epay.mode = "slow"
    with pytest.raises(Retryable, match="Timeout"):
        gateway_for(fake_epay).query(ORDER)


@pytest.mark.sqlite_only
def test_a_site_that_is_not_there_is_retryable(fake_epay):
    url = fake_epay.url
    fake_epay.stop()
    with pytest.raises(Retryable, match="ConnectError"):
        EpayGateway(config={"pid": PID, "url": url}, secrets={"key": KEY}).query(ORDER)


@pytest.mark.sqlite_only
def test_the_key_in_the_query_url_never_reaches_the_log(fake_epay, caplog):
    # given: everything logged, down to httpx's and httpcore's debug lines
    fake_epay.orders[ORDER.order_no] = site_answer(ORDER.order_no)
    caplog.set_level(logging.DEBUG)
    # when
    gateway_for(fake_epay).query(ORDER)
    # then: the request was logged (so the check means something), without the key
    assert "api.php" in caplog.text
    assert KEY not in caplog.text
    assert "key=[redacted]" in caplog.text


@pytest.mark.django_db(transaction=True)
def test_a_lost_notification_is_made_good_by_the_query_once(client, make_product, fake_epay):
    # given: an order paid at the site whose notification never arrived
    enable_epay(url=fake_epay.url)
    order = stocked_order(client, make_product)
    row = Order.objects.get(order_no=order["order_no"])
    fake_epay.orders[row.order_no] = site_answer(row.order_no, money=order["amount"])
    # when: reconciliation asks the site and confirms what it says, then the notification turns up late
    notice = gateway_get("epay").query(order_info(row))
    outcome = payment_confirm(gateway="epay", notice=notice)
    late = notify(client, paid_params(order_no=row.order_no, money=order["amount"], trade_no=notice.trade_no))
    # then
    assert outcome == Outcome.FULFILLED
    assert late.content == b"success"
    assert last_notification().result == "duplicate"
    assert json.loads(client.get(f"/api/v1/orders/{row.order_no}", HTTP_X_ORDER_TOKEN=order["token"]).content)["status"] == "fulfilled"


@pytest.mark.sqlite_only
def test_the_key_never_goes_out_over_plain_http_to_another_machine_or_in_production(fake_epay, settings):
    # given a site stored as http before the rule, and the loopback fake once production is on
    stored_earlier = EpayGateway(config={"pid": PID, "url": "http://pay.example/", "refund": "1"}, secrets={"key": KEY})
    # when / then: refused before any request, saying what to set
    with pytest.raises(KamiError, match=r"must start with https://.*kami gateway set epay url=https://"):
        stored_earlier.query(ORDER)
    with pytest.raises(KamiError, match="must start with https://"):
        stored_earlier.refund(order=ORDER, trade_no="T1", amount=Decimal("1.00"), refund_no="R1")
    settings.PRODUCTION = True
    with pytest.raises(KamiError, match="in production"):
        gateway_for(fake_epay).query(ORDER)
    assert fake_epay.requests == []
