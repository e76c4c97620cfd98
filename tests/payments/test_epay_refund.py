"""Epay refunds (`api.php?act=refund`, newer 彩虹 versions) against a loopback fake of the site.
They are off unless the merchant sets `refund=1`: a site without the API keeps the manual path."""
from __future__ import annotations

import logging
from decimal import Decimal

import pytest

from kami.core.errors import BadInput, KamiError, Retryable
from kami.fulfilment.refund import order_refund
from kami.orders.models import Order
from kami.payments.gateways.epay import EpayGateway
from kami.payments.interface import OrderInfo
from kami.payments.models import GatewayAccount
from kami.payments.registry import gateway_get
from kami.stock.models import Key
from tests.payments.epay_play import KEY, PID, enable_epay, notify, paid_params, stocked_order

# Tests marked sqlite_only talk to the gateway's loopback fake or parse alone: the same on every engine.

ORDER = OrderInfo(order_no="261127120012345678", amount=Decimal("29.90"), currency="CNY", subject="Steam 50",
                  email="buyer@example.com")
TRADE_NO = "2026112712001234567"


def gateway_for(site, **config) -> EpayGateway:
    return EpayGateway(config={"pid": PID, "url": site.url, "refund": "1", **config}, secrets={"key": KEY})


def paid_at_site(site, order_no: str = ORDER.order_no, money: str = "29.90") -> None:
    site.orders[order_no] = {"code": 1, "msg": "succ", "trade_no": TRADE_NO, "out_trade_no": order_no, "pid": PID,
                             "type": "alipay", "money": money, "status": "1"}


def refund(site, **config):
    return gateway_for(site, **config).refund(order=ORDER, trade_no=TRADE_NO, amount=Decimal("29.9"),
                                              refund_no=f"R{ORDER.order_no}")


# -- the call -------------------------------------------------------------------------------------

@pytest.mark.sqlite_only
@pytest.mark.parametrize("success_code", [1, 0])
def test_refund_posts_pid_key_trade_and_money_and_is_done(fake_epay, success_code):
    # given: a paid order at a site answering code 1 (V1) or code 0 with msg 退款成功 (some forks)
    paid_at_site(fake_epay)
    fake_epay.success_code = success_code
    # when
    result = refund(fake_epay)
    # then: the key went in the POST body, not the URL
    assert fake_epay.requests[-1] == "/api.php?act=refund"
    assert fake_epay.posted[-1] == {"pid": PID, "key": KEY, "out_trade_no": ORDER.order_no, "trade_no": TRADE_NO,
                                    "money": "29.90"}
    assert fake_epay.refunds == [{"out_trade_no": ORDER.order_no, "trade_no": TRADE_NO, "money": "29.90"}]
    assert (result.refund_no, result.gateway_ref, result.done, result.pending) == (f"R{ORDER.order_no}", TRADE_NO,
                                                                                   True, False)


@pytest.mark.sqlite_only
def test_a_repeat_of_a_refund_the_site_already_made_is_done(fake_epay):
    paid_at_site(fake_epay)
    refund(fake_epay)
    assert refund(fake_epay).done is True
    assert len(fake_epay.refunds) == 1


@pytest.mark.sqlite_only
def test_a_site_without_the_refund_api_says_refund_by_hand(fake_epay):
    # given: an older site, answering {"code":-4,"msg":"No Act!"}
    paid_at_site(fake_epay)
    fake_epay.refunds_supported = False
    # when / then
    with pytest.raises(KamiError, match="by hand in the Epay site's merchant panel") as caught:
        refund(fake_epay)
    assert caught.value.code == "refund_unsupported"
    assert KEY not in str(caught.value)


@pytest.mark.sqlite_only
@pytest.mark.parametrize("answer_for, message", [("unpaid", "未支付"), ("wrong_key", "KEY校验失败"),
                                                 ("unknown", "订单号不存在")])
def test_a_refused_refund_says_why_without_the_key(fake_epay, answer_for, message):
    if answer_for == "unpaid":
        paid_at_site(fake_epay)
        fake_epay.orders[ORDER.order_no]["status"] = "0"
    elif answer_for == "wrong_key":
        paid_at_site(fake_epay)
        fake_epay.key = "another-key"
    with pytest.raises(KamiError, match=message) as caught:
        refund(fake_epay)
    assert caught.value.code == "refund_failed"
    assert not isinstance(caught.value, Retryable)
    assert KEY not in str(caught.value)
    assert fake_epay.refunds == []


@pytest.mark.sqlite_only
@pytest.mark.parametrize("mode", ["error500", "drop", "not_json"])
def test_a_site_in_trouble_is_retryable(fake_epay, mode):
    paid_at_site(fake_epay)
    fake_epay.mode = mode
    with pytest.raises(Retryable) as caught:
        refund(fake_epay)
    assert KEY not in str(caught.value)


@pytest.mark.sqlite_only
def test_the_key_in_the_refund_body_never_reaches_the_log(fake_epay, caplog):
    # given: everything logged, down to httpx's and httpcore's debug lines
    paid_at_site(fake_epay)
    caplog.set_level(logging.DEBUG)
    # when
    refund(fake_epay)
    # then: the request was logged (so the check means something), without the key
    assert "act=refund" in caplog.text
    assert KEY not in caplog.text


# -- the setting ----------------------------------------------------------------------------------

@pytest.mark.parametrize("value, on", [(None, False), ("", False), ("0", False), ("1", True)])
def test_refunds_through_the_site_are_on_only_with_refund_1(fake_epay, value, on):
    config = {"pid": PID, "url": fake_epay.url, **({} if value is None else {"refund": value})}
    gateway = EpayGateway(config=config, secrets={"key": KEY})
    assert gateway.supports_refund is on
    assert EpayGateway.supports_refund is False


@pytest.mark.parametrize("given, stored", [("1", "1"), ("yes", "1"), ("true", "1"), ("0", "0"), ("off", "0"), ("", "0")])
def test_the_refund_setting_is_normalised(given, stored):
    assert EpayGateway.config_clean({"refund": given})["refund"] == stored


def test_a_refund_setting_that_is_neither_on_nor_off_is_refused():
    with pytest.raises(BadInput, match="refund"):
        EpayGateway.config_clean({"refund": "maybe"})


# -- end to end -----------------------------------------------------------------------------------

def paid_order(client, make_product, fake_epay) -> dict:
    order = stocked_order(client, make_product)
    assert notify(client, paid_params(order_no=order["order_no"], money=order["amount"], trade_no=TRADE_NO)).content == b"success"
    paid_at_site(fake_epay, order["order_no"], money=order["amount"])
    assert Order.objects.get(order_no=order["order_no"]).status == Order.Status.FULFILLED
    return order


@pytest.mark.django_db(transaction=True)
def test_with_refund_1_kami_order_refund_goes_through_the_site(client, make_product, fake_epay):
    # given: a paid, fulfilled order; refunds through the site turned on
    enable_epay(url=fake_epay.url, refund="1")
    assert GatewayAccount.objects.get(name="epay").config["refund"] == "1"
    order = paid_order(client, make_product, fake_epay)
    # when
    outcome = order_refund(order_no=order["order_no"], reason="buyer asked")
    # then: refunded at the site, the order refunded, its key voided
    assert (outcome.manual, outcome.keys_voided, outcome.gateway_ref) == (False, 1, TRADE_NO)
    assert fake_epay.refunds == [{"out_trade_no": order["order_no"], "trade_no": TRADE_NO, "money": order["amount"]}]
    assert Order.objects.get(order_no=order["order_no"]).status == Order.Status.REFUNDED
    assert Key.objects.filter(status=Key.Status.VOID, void_reason="refunded").count() == 1


@pytest.mark.django_db(transaction=True)
def test_without_refund_1_the_refund_stays_manual(client, make_product, fake_epay):
    # given: the default: the site may not have the refund API
    enable_epay(url=fake_epay.url)
    order = paid_order(client, make_product, fake_epay)
    assert gateway_get("epay").supports_refund is False
    # when
    outcome = order_refund(order_no=order["order_no"])
    # then: nothing asked of the site; the order refunded by hand, its key voided
    assert (outcome.manual, outcome.keys_voided) == (True, 1)
    assert fake_epay.posted == [] and fake_epay.refunds == []
    assert Order.objects.get(order_no=order["order_no"]).status == Order.Status.REFUNDED
