"""WeChat Pay v3 played by the tests: notifications encrypted and signed as WeChat does, and a
loopback API that checks our Authorization signatures and signs its answers."""
from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest

from kami.core import clock
from kami.core.errors import KamiError, Retryable
from kami.fulfilment.backfill import sweep
from kami.orders.models import Order, OrderKey
from kami.payments.gateways.wechatpay import WeChatPayGateway
from kami.payments.interface import OrderInfo, Urls
from kami.payments.models import GatewayAccount
from kami.payments.registry import secrets_decrypt, secrets_encrypt
from tests.payments.alipay_play import private_pem, public_pem
from tests.payments.wechat_play import (APIV3_KEY, APPID, MCHID, MERCHANT_KEY, PUB_KEY_ID, SERIAL_NO, WECHAT_KEY,
                                        FakeWeChatPay, add_keys, create_order, enable_wechatpay, encrypted_body,
                                        fixture, last_notification, notify, nothing_delivered, payments_of,
                                        signed_headers, stocked_order, stored_text, transaction)

pytestmark = pytest.mark.django_db(transaction=True)
# Tests marked sqlite_only talk to the gateway's loopback fake or parse alone: the same on every engine.

ORDER = OrderInfo(order_no="261127120012345678", amount=Decimal("29.90"), currency="CNY", subject="Steam 50",
                  email="buyer@example.com")
URLS = Urls(notify="https://shop.example/pay/wechatpay/notify", ret="https://shop.example/o/1")


@pytest.fixture
def fake_wechat():
    site = FakeWeChatPay().start()
    try:
        yield site
    finally:
        site.stop()


@pytest.fixture
def shop(fake_wechat):
    enable_wechatpay(api_base=fake_wechat.url)
    return fake_wechat


def gateway_for(site) -> WeChatPayGateway:
    return WeChatPayGateway(config={"mchid": MCHID, "appid": APPID, "serial_no": SERIAL_NO, "public_key_id": PUB_KEY_ID,
                                    "api_base": site.url},
                            secrets={"merchant_private_key": private_pem(MERCHANT_KEY),
                                     "wechatpay_public_key": public_pem(WECHAT_KEY), "apiv3_key": APIV3_KEY})


def fen(order: dict) -> int:
    return int(Decimal(order["amount"]) * 100)


def paid_notification(order: dict, **changes) -> tuple[bytes, dict]:
    body = encrypted_body(transaction(order_no=order["order_no"], total=fen(order), **changes))
    return body, signed_headers(body)


def keys_of(order_no: str) -> int:
    return OrderKey.objects.filter(order__order_no=order_no).count()


# -- create -------------------------------------------------------------------------------------

def test_an_order_gets_the_code_url_from_a_signed_native_call(client, make_product, shop):
    # when
    order = stocked_order(client, make_product, quantity=2)
    # then: the fake checked our Authorization signature, and answered a signed code_url
    assert order["payment"] == {"type": "qr", "qr": f"weixin://wxpay/bizpayurl?pr={order['order_no'][-8:]}"}
    method, path, body = shop.received[-1]
    sent = json.loads(body)
    assert (method, path) == ("POST", "/v3/pay/transactions/native")
    assert (sent["mchid"], sent["appid"], sent["out_trade_no"], sent["amount"]) == (
        MCHID, APPID, order["order_no"], {"total": 5980, "currency": "CNY"})
    assert sent["notify_url"] == "http://testserver/pay/wechatpay/notify"
    assert sent["time_expire"].endswith("+08:00")


@pytest.mark.sqlite_only
def test_an_answer_not_signed_by_wechat_is_not_believed(fake_wechat):
    fake_wechat.mode = "bad_sign"
    with pytest.raises(KamiError, match="bad signature") as caught:
        gateway_for(fake_wechat).create_payment(ORDER, URLS)
    assert not isinstance(caught.value, Retryable)


@pytest.mark.sqlite_only
def test_an_answer_under_another_key_id_is_not_believed(fake_wechat):
    fake_wechat.mode = "wrong_serial"
    with pytest.raises(KamiError, match="public_key_id"):
        gateway_for(fake_wechat).create_payment(ORDER, URLS)


@pytest.mark.sqlite_only
def test_a_request_wechat_cannot_verify_is_a_refusal_naming_the_fix(fake_wechat):
    gateway = gateway_for(fake_wechat)
    gateway.serial_no = "0000"
    with pytest.raises(KamiError, match="SIGN_ERROR.*serial_no") as caught:
        gateway.create_payment(ORDER, URLS)
    assert not isinstance(caught.value, Retryable)


# -- notifications ------------------------------------------------------------------------------

def test_paid_notification_fulfils_the_order_once_and_a_repeat_changes_nothing(client, make_product, shop):
    # given
    order = stocked_order(client, make_product, keys=3, quantity=2)
    body, headers = paid_notification(order)
    # when
    first = notify(client, body, headers)
    again = notify(client, body, headers)
    # then
    assert (first.status_code, first.content, again.status_code) == (204, b"", 204)
    assert Order.objects.get(order_no=order["order_no"]).status == "fulfilled"
    assert (keys_of(order["order_no"]), payments_of(order["order_no"])) == (2, 1)
    assert last_notification().result == "duplicate"
    assert APIV3_KEY not in stored_text(last_notification())


@pytest.mark.parametrize("name, paid", [("wechatpay_paid", True), ("wechatpay_notpay", False)])
def test_recorded_notifications_are_taken_as_sent(client, make_product, fake_wechat, clock_travel, name, paid):
    # given: the recorded keys, the clock at the recording, an order renumbered like it
    sample = fixture(name)
    enable_wechatpay(api_base=fake_wechat.url)
    item = make_product(price=Decimal(sample["price"]))
    add_keys(item, ["REC-1", "REC-2"])
    order = create_order(client, item, quantity=sample["quantity"], gateway="wechatpay")
    Order.objects.filter(order_no=order["order_no"]).update(order_no=sample["out_trade_no"])
    enable_wechatpay(wechatpay_public_key=sample["wechatpay_public_key"], apiv3_key=sample["apiv3_key"])
    recorded = datetime.fromtimestamp(int(sample["headers"]["Wechatpay-Timestamp"]), timezone.utc)
    clock_travel(recorded - datetime.now(timezone.utc))
    # when
    response = notify(client, sample["body"].encode(), sample["headers"])
    # then
    assert response.status_code == 204
    row = Order.objects.get(order_no=sample["out_trade_no"])
    assert (row.status == "fulfilled", keys_of(row.order_no)) == (paid, sample["quantity"] if paid else 0)
    assert last_notification().result == ("fulfilled" if paid else "ignored")


@pytest.mark.parametrize("tamper", ["signed_by_another_key", "body_edited", "signtest_probe", "stale", "future",
                                    "other_serial", "no_timestamp", "wrong_apiv3_key", "signature_garbled"])
def test_a_notification_that_does_not_verify_is_refused(client, make_product, shop, tamper):
    # given
    a = stocked_order(client, make_product)
    b = stocked_order(client, make_product)
    body = encrypted_body(transaction(order_no=a["order_no"], total=fen(a)),
                          apiv3_key="x" * 32 if tamper == "wrong_apiv3_key" else APIV3_KEY)
    ts = {"stale": int(clock.now().timestamp()) - 301, "future": int(clock.now().timestamp()) + 305}.get(tamper)
    headers = signed_headers(body, ts=ts, key=MERCHANT_KEY if tamper == "signed_by_another_key" else WECHAT_KEY,
                             serial="PUB_KEY_ID_0000000000000000000000000000000" if tamper == "other_serial" else PUB_KEY_ID)
    if tamper == "body_edited":  # A's notification, its order number swapped for B's without re-signing
        envelope = json.loads(body)
        envelope["resource"] = json.loads(encrypted_body(transaction(order_no=b["order_no"], total=fen(b))))["resource"]
        body = json.dumps(envelope, ensure_ascii=False).encode()
    elif tamper == "signtest_probe":
        headers["Wechatpay-Signature"] = "WECHATPAY/SIGNTEST/" + headers["Wechatpay-Signature"]
    elif tamper == "no_timestamp":
        del headers["Wechatpay-Timestamp"]
    elif tamper == "signature_garbled":
        headers["Wechatpay-Signature"] = headers["Wechatpay-Signature"][:-8] + "AAAAAAA="
    # when
    response = notify(client, body, headers)
    # then
    assert response.status_code == 400
    assert response.json()["code"] == "FAIL"
    assert (last_notification().result, last_notification().verified) == ("rejected", False)
    assert nothing_delivered()


@pytest.mark.parametrize("field, value", [("mchid", "1900000999"), ("appid", "wx0000000000000000")])
def test_another_merchants_payment_is_refused_even_when_wechat_signed_it(client, make_product, shop, field, value):
    order = stocked_order(client, make_product)
    response = notify(client, *paid_notification(order, **{field: value}))
    assert response.status_code == 400
    assert field in last_notification().error
    assert nothing_delivered()


@pytest.mark.parametrize("changes, reason", [({"total": 1}, "amount_mismatch"), ({"currency": "USD"}, None)])
def test_a_signed_wrong_amount_or_currency_is_flagged_and_nothing_delivered(client, make_product, shop, changes, reason):
    order = stocked_order(client, make_product)
    body = encrypted_body(transaction(order_no=order["order_no"], **{"total": fen(order), **changes}))
    response = notify(client, body, signed_headers(body))
    assert response.status_code == 204  # a real payment: acknowledged, a human decides
    row = Order.objects.get(order_no=order["order_no"])
    assert row.status == "flagged"
    assert reason is None or row.flag_reason == reason
    assert nothing_delivered()


@pytest.mark.parametrize("state", ["NOTPAY", "CLOSED", "PAYERROR", "REFUND"])
def test_an_unpaid_state_is_acknowledged_and_delivers_nothing(client, make_product, shop, state):
    order = stocked_order(client, make_product)
    response = notify(client, *paid_notification(order, state=state))
    assert response.status_code == 204
    assert last_notification().result == "ignored"
    assert nothing_delivered()


@pytest.mark.parametrize("secret, stored", [("wechatpay_public_key", ""), ("apiv3_key", ""), ("apiv3_key", "short")])
def test_an_empty_or_broken_key_refuses_everything(client, make_product, shop, secret, stored):
    # given: a key blanked behind the CLI's back (it refuses an empty one)
    order = stocked_order(client, make_product)
    account = GatewayAccount.objects.get(name="wechatpay")
    account.secrets_key_id, account.secrets_ciphertext = secrets_encrypt(
        "wechatpay", {**secrets_decrypt(account), secret: stored})
    account.save()
    # when
    response = notify(client, *paid_notification(order))
    # then
    assert response.status_code == 400
    assert secret in last_notification().error
    assert nothing_delivered()


# -- query and refund ---------------------------------------------------------------------------

@pytest.mark.sqlite_only
def test_query_gives_a_paid_notice_from_a_signed_answer(fake_wechat):
    fake_wechat.trades[ORDER.order_no] = transaction(order_no=ORDER.order_no, total=2990, transaction_id="4200001")
    notice = gateway_for(fake_wechat).query(ORDER)
    assert (notice.order_no, notice.trade_no, notice.amount, notice.currency, notice.paid) == (
        ORDER.order_no, "4200001", Decimal("29.90"), "CNY", True)
    method, path, _ = fake_wechat.received[-1]
    assert (method, path) == ("GET", f"/v3/pay/transactions/out-trade-no/{ORDER.order_no}?mchid={MCHID}")


@pytest.mark.sqlite_only
def test_query_of_an_unpaid_order_is_not_paid(fake_wechat):
    trade = transaction(order_no=ORDER.order_no, total=2990, state="NOTPAY")
    del trade["transaction_id"]
    fake_wechat.trades[ORDER.order_no] = trade
    assert gateway_for(fake_wechat).query(ORDER).paid is False


@pytest.mark.sqlite_only
def test_query_of_an_order_wechat_does_not_know_is_none(fake_wechat):
    assert gateway_for(fake_wechat).query(ORDER) is None


@pytest.mark.sqlite_only
@pytest.mark.parametrize("mode", ["error500", "drop", "busy"])
def test_query_trouble_is_retryable(fake_wechat, mode):
    fake_wechat.mode = mode
    with pytest.raises(Retryable):
        gateway_for(fake_wechat).query(ORDER)


@pytest.mark.sqlite_only
def test_refund_sends_our_refund_number_as_the_idempotency_key(fake_wechat):
    result = gateway_for(fake_wechat).refund(order=ORDER, trade_no="4200001", amount=Decimal("10"), refund_no="R-0001",
                                             reason="buyer asked")
    assert fake_wechat.refunds == [{"transaction_id": "4200001", "out_refund_no": "R-0001", "reason": "buyer asked",
                                    "amount": {"refund": 1000, "total": 2990, "currency": "CNY"}}]
    assert (result.refund_no, result.gateway_ref, result.done, result.pending) == ("R-0001", "50300001", False, True)


@pytest.mark.sqlite_only
def test_a_refund_wechat_cannot_do_now_is_retryable(fake_wechat):
    fake_wechat.mode = "busy"
    with pytest.raises(Retryable):
        gateway_for(fake_wechat).refund(order=ORDER, trade_no="4200001", amount=Decimal("1"), refund_no="R-2")


# -- close --------------------------------------------------------------------------------------

@pytest.mark.sqlite_only
def test_close_closes_the_unpaid_transaction_with_a_signed_request(fake_wechat):
    # given: the buyer scanned the code and did not pay
    fake_wechat.trades[ORDER.order_no] = transaction(order_no=ORDER.order_no, total=2990, state="NOTPAY")
    # when
    gateway_for(fake_wechat).close(order=ORDER)
    # then: the fake verified our Authorization (else 401, a refusal) and closed it with 204
    method, path, body = fake_wechat.received[-1]
    assert (method, path, json.loads(body)) == ("POST", f"/v3/pay/transactions/out-trade-no/{ORDER.order_no}/close",
                                                {"mchid": MCHID})
    assert fake_wechat.closed == [ORDER.order_no]
    assert WeChatPayGateway.supports_close is True


@pytest.mark.sqlite_only
@pytest.mark.parametrize("state", [None, "CLOSED", "SUCCESS"])
def test_close_of_an_order_wechat_does_not_know_or_cannot_close_is_done(fake_wechat, state):
    # given: never scanned, already closed, or paid meanwhile (the notification path flags that)
    if state:
        fake_wechat.trades[ORDER.order_no] = transaction(order_no=ORDER.order_no, total=2990, state=state)
    # when / then: no error
    gateway_for(fake_wechat).close(order=ORDER)
    assert fake_wechat.received[-1][1].endswith("/close")
    assert fake_wechat.closed == []


@pytest.mark.sqlite_only
@pytest.mark.parametrize("mode", ["error500", "drop", "busy"])
def test_close_trouble_is_retryable(fake_wechat, mode):
    fake_wechat.mode = mode
    with pytest.raises(Retryable):
        gateway_for(fake_wechat).close(order=ORDER)


@pytest.mark.sqlite_only
@pytest.mark.parametrize("mode, message", [("bad_sign", "bad signature"), ("wrong_serial", "Wechatpay-Serial")])
def test_a_close_answer_not_signed_by_wechat_is_not_believed(fake_wechat, mode, message):
    fake_wechat.trades[ORDER.order_no] = transaction(order_no=ORDER.order_no, total=2990, state="NOTPAY")
    fake_wechat.mode = mode
    with pytest.raises(KamiError, match=message) as caught:
        gateway_for(fake_wechat).close(order=ORDER)
    assert not isinstance(caught.value, Retryable)


def test_the_sweep_closes_an_expired_order_at_wechat(client, make_product, shop, clock_travel):
    # given: an order whose code the buyer scanned and never paid
    order = stocked_order(client, make_product)
    trade = transaction(order_no=order["order_no"], total=fen(order), state="NOTPAY")
    del trade["transaction_id"]
    shop.trades[order["order_no"]] = trade
    # when: the payment window and its grace are over
    clock_travel(timedelta(minutes=40))
    result = sweep()
    # then
    assert Order.objects.get(order_no=order["order_no"]).status == Order.Status.EXPIRED
    assert (result["expired"], result["closed"]) == (1, 1)
    assert shop.closed == [order["order_no"]]
    assert nothing_delivered()
