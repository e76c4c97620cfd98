"""Alipay played by the tests: RSA2 notifications signed as Alipay signs them, and a loopback
`gateway.do` that checks our signatures and signs its answers."""
from __future__ import annotations

import json
from datetime import timedelta
from decimal import Decimal
from urllib.parse import parse_qs, urlsplit

import pytest

from kami.core.errors import KamiError, Retryable
from kami.fulfilment.backfill import sweep
from kami.orders.models import Order, OrderKey
from kami.payments.gateways.alipay import AlipayGateway, alipay_request_content, rsa2_verify
from kami.payments.interface import OrderInfo, Urls
from kami.payments.models import GatewayAccount
from kami.payments.registry import secrets_decrypt, secrets_encrypt
from tests.payments.alipay_play import (ALIPAY_KEY, APP_ID, APP_KEY, SELLER_ID, add_keys, create_order,
                                        enable_alipay, fixture, last_notification, notify, nothing_delivered,
                                        paid_params, payments_of, private_pem, public_base64, public_pem,
                                        stocked_order, stored_text)
from tests.payments.alipay_play import fake_alipay  # noqa: F401 (the fixture)

pytestmark = pytest.mark.django_db(transaction=True)
# Tests marked sqlite_only talk to the gateway's loopback fake or parse alone: the same on every engine.

ORDER = OrderInfo(order_no="261127120012345678", amount=Decimal("29.90"), currency="CNY", subject="Steam 50",
                  email="buyer@example.com")
URLS = Urls(notify="https://shop.example/pay/alipay/notify", ret="https://shop.example/o/1")


@pytest.fixture
def shop(fake_alipay):
    """Alipay enabled against the fake; orders get their QR code from it."""
    enable_alipay(gateway_url=fake_alipay.url)
    return fake_alipay


def gateway_for(site, **config) -> AlipayGateway:
    return AlipayGateway(config={"app_id": APP_ID, "gateway_url": site.url, **config},
                         secrets={"app_private_key": private_pem(APP_KEY), "alipay_public_key": public_pem(ALIPAY_KEY)})


def keys_of(order_no: str) -> int:
    return OrderKey.objects.filter(order__order_no=order_no).count()


# -- create -------------------------------------------------------------------------------------

def test_an_order_gets_the_qr_code_alipay_precreated(client, make_product, shop):
    # when
    order = stocked_order(client, make_product, quantity=2)
    # then: the QR code came from a signed precreate with the order's number, amount and expiry
    assert order["payment"] == {"type": "qr", "qr": f"https://qr.alipay.com/bax0{order['order_no'][-8:]}"}
    sent = shop.received[-1]
    assert (sent["method"], sent["sign_type"], sent["app_id"], sent["charset"]) == ("alipay.trade.precreate", "RSA2", APP_ID, "utf-8")
    assert sent["notify_url"] == "http://testserver/pay/alipay/notify"
    biz = json.loads(sent["biz_content"])
    assert (biz["out_trade_no"], biz["total_amount"]) == (order["order_no"], "59.80")
    assert len(biz["time_expire"]) == 19


def test_page_mode_redirects_to_a_signed_page_pay_url(client, make_product, shop):
    # given
    enable_alipay(mode="page", gateway_url="https://openapi-sandbox.dl.alipaydev.com/gateway.do")
    # when
    order = stocked_order(client, make_product)
    # then: no server call; the URL carries parameters our app key signed
    url = urlsplit(order["payment"]["url"])
    params = {k: v[0] for k, v in parse_qs(url.query).items()}
    assert (order["payment"]["type"], url.netloc, params["method"]) == (
        "redirect", "openapi-sandbox.dl.alipaydev.com", "alipay.trade.page.pay")
    assert json.loads(params["biz_content"])["product_code"] == "FAST_INSTANT_TRADE_PAY"
    assert params["return_url"] == f"http://testserver/orders/{order['order_no']}/return"
    assert order["token"] not in order["payment"]["url"]
    assert rsa2_verify(APP_KEY.public_key(), alipay_request_content(params).encode(), params["sign"])
    assert shop.received == []


def test_a_usd_product_cannot_be_paid_with_alipay(client, make_product, shop):
    item = make_product(currency="USD")
    add_keys(item, ["K-1"])
    response = client.post("/api/v1/orders", {"product": item.slug, "quantity": 1, "email": "buyer@example.com",
                                              "gateway": "alipay"}, content_type="application/json")
    assert response.status_code == 400
    assert "USD" in response.json()["fields"]["gateway"]


@pytest.mark.sqlite_only
def test_a_precreate_refused_by_alipay_names_the_reason(fake_alipay):
    gateway = AlipayGateway(config={"app_id": "2021000000009999", "gateway_url": fake_alipay.url},
                            secrets=gateway_for(fake_alipay).secrets)
    with pytest.raises(KamiError, match="isv.invalid-app-id") as caught:
        gateway.create_payment(ORDER, URLS)
    assert not isinstance(caught.value, Retryable)


# -- notifications ------------------------------------------------------------------------------

def test_paid_notification_fulfils_the_order_once_and_a_repeat_changes_nothing(client, make_product, shop):
    # given
    order = stocked_order(client, make_product, keys=3, quantity=2)
    params = paid_params(order_no=order["order_no"], total_amount=order["amount"])
    # when
    first = notify(client, params)
    again = notify(client, params)
    # then
    assert (first.status_code, first.content, first["Content-Type"]) == (200, b"success", "text/plain")
    assert again.content == b"success"
    assert Order.objects.get(order_no=order["order_no"]).status == "fulfilled"
    assert (keys_of(order["order_no"]), payments_of(order["order_no"])) == (2, 1)
    assert last_notification().result == "duplicate"


@pytest.mark.parametrize("name, paid", [("alipay_paid", True), ("alipay_finished", True), ("alipay_wait_buyer_pay", False)])
def test_recorded_notifications_are_taken_as_sent(client, make_product, name, paid):
    # given: the shop configured with the recorded key (page mode: the fake's replies are signed
    # by another key), an order renumbered like the recording
    sample = fixture(name)
    enable_alipay(mode="page", alipay_public_key=sample["alipay_public_key"], seller_id=sample["seller_id"])
    item = make_product(name=sample["product_name"], price=Decimal(sample["price"]))
    add_keys(item, ["REC-1", "REC-2"])
    order = create_order(client, item, quantity=sample["quantity"], gateway="alipay")
    Order.objects.filter(order_no=order["order_no"]).update(order_no=sample["params"]["out_trade_no"])
    # when: the body is sent byte for byte
    response = notify(client, sample["body"])
    # then
    assert response.content == b"success"
    row = Order.objects.get(order_no=sample["params"]["out_trade_no"])
    assert (row.status == "fulfilled", keys_of(row.order_no)) == (paid, sample["quantity"] if paid else 0)
    assert last_notification().result == ("fulfilled" if paid else "ignored")


@pytest.mark.parametrize("tamper", ["signed_by_another_key", "sign_garbled", "sign_missing", "out_trade_no_edited",
                                    "amount_edited", "field_added", "sign_type_rsa"])
def test_a_notification_that_does_not_verify_is_refused(client, make_product, shop, tamper):
    # given: orders A and B; a notification for A
    a = stocked_order(client, make_product)
    b = stocked_order(client, make_product)
    params = paid_params(order_no=a["order_no"], total_amount=a["amount"],
                         key=APP_KEY if tamper == "signed_by_another_key" else ALIPAY_KEY)
    if tamper == "sign_garbled":
        params["sign"] = params["sign"][:-8] + "AAAAAAA="
    elif tamper == "sign_missing":
        del params["sign"]
    elif tamper == "out_trade_no_edited":
        params["out_trade_no"] = b["order_no"]
    elif tamper == "amount_edited":
        params["total_amount"] = "0.01"
    elif tamper == "field_added":
        params["refund_fee"] = "29.90"
    elif tamper == "sign_type_rsa":
        params["sign_type"] = "RSA"
    # when
    response = notify(client, params)
    # then
    assert (response.status_code, response.content) == (400, b"fail")
    assert (last_notification().result, last_notification().verified) == ("rejected", False)
    assert nothing_delivered()


def test_a_field_sent_twice_is_refused(client, make_product, shop):
    order = stocked_order(client, make_product)
    params = paid_params(order_no=order["order_no"], total_amount=order["amount"])
    body = "&".join(f"{k}={v}" for k, v in [*params.items(), ("total_amount", "0.01")]).replace("+", "%2B")
    response = notify(client, body)
    assert response.content == b"fail"
    assert "sent more than once" in last_notification().error
    assert nothing_delivered()


def test_another_apps_notification_is_refused_even_when_alipay_signed_it(client, make_product, shop):
    order = stocked_order(client, make_product)
    response = notify(client, paid_params(order_no=order["order_no"], total_amount=order["amount"], app_id="2021000000009999"))
    assert response.content == b"fail"
    assert "app_id" in last_notification().error
    assert nothing_delivered()


def test_another_sellers_notification_is_refused_when_seller_id_is_set(client, make_product, shop):
    enable_alipay(seller_id="2088999999999999")
    order = stocked_order(client, make_product)
    response = notify(client, paid_params(order_no=order["order_no"], total_amount=order["amount"]))
    assert response.content == b"fail"
    assert "seller_id" in last_notification().error
    assert nothing_delivered()


def test_a_notification_for_this_seller_is_accepted_when_seller_id_is_set(client, make_product, shop):
    enable_alipay(seller_id=SELLER_ID)
    order = stocked_order(client, make_product)
    response = notify(client, paid_params(order_no=order["order_no"], total_amount=order["amount"]))
    assert response.content == b"success"
    assert Order.objects.get(order_no=order["order_no"]).status == "fulfilled"


def test_a_signed_wrong_amount_is_flagged_and_nothing_delivered(client, make_product, shop):
    order = stocked_order(client, make_product)
    response = notify(client, paid_params(order_no=order["order_no"], total_amount="0.01"))
    assert response.content == b"success"  # a real payment: acknowledged, a human decides
    row = Order.objects.get(order_no=order["order_no"])
    assert (row.status, row.flag_reason) == ("flagged", "amount_mismatch")
    assert nothing_delivered()


@pytest.mark.parametrize("status", ["WAIT_BUYER_PAY", "TRADE_CLOSED", ""])
def test_an_unpaid_status_is_acknowledged_and_delivers_nothing(client, make_product, shop, status):
    order = stocked_order(client, make_product)
    response = notify(client, paid_params(order_no=order["order_no"], total_amount=order["amount"], status=status))
    assert response.content == b"success"
    assert last_notification().result == "ignored"
    assert Order.objects.get(order_no=order["order_no"]).status == "pending"
    assert nothing_delivered()


@pytest.mark.parametrize("stored_key", ["", "   ", "not a key", "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----"])
def test_an_empty_or_broken_alipay_public_key_refuses_everything(client, make_product, shop, stored_key):
    # given: the key was blanked or mangled behind the CLI's back (it refuses an empty one)
    order = stocked_order(client, make_product)
    account = GatewayAccount.objects.get(name="alipay")
    account.secrets_key_id, account.secrets_ciphertext = secrets_encrypt(
        "alipay", {**secrets_decrypt(account), "alipay_public_key": stored_key})
    account.save()
    # when
    response = notify(client, paid_params(order_no=order["order_no"], total_amount=order["amount"]))
    # then
    assert response.content == b"fail"
    assert "alipay_public_key" in last_notification().error
    assert nothing_delivered()


def test_keys_in_pkcs1_and_pem_form_are_accepted_and_never_stored(client, make_product, shop):
    enable_alipay(app_private_key=private_pem(APP_KEY, pkcs1=True).replace("\n", "\\n"),
                  alipay_public_key=public_pem(ALIPAY_KEY))
    order = stocked_order(client, make_product)
    response = notify(client, paid_params(order_no=order["order_no"], total_amount=order["amount"]))
    assert response.content == b"success"
    private_body = private_pem(APP_KEY, pkcs1=True).splitlines()[1]
    assert private_body not in stored_text(last_notification())
    assert public_base64(ALIPAY_KEY)[40:80] not in stored_text(last_notification())


# -- query and refund ---------------------------------------------------------------------------

@pytest.mark.sqlite_only
def test_query_gives_a_paid_notice_verified_over_the_raw_answer(fake_alipay):
    # given: the answer carries escaped slashes and Chinese, as Alipay's does
    fake_alipay.trades[ORDER.order_no] = {"out_trade_no": ORDER.order_no, "trade_no": "2026112722001400001",
                                          "trade_status": "TRADE_SUCCESS", "total_amount": "29.90",
                                          "subject": "Steam 充值 50/月"}
    # when
    notice = gateway_for(fake_alipay).query(ORDER)
    # then
    assert (notice.order_no, notice.trade_no, notice.amount, notice.currency, notice.paid) == (
        ORDER.order_no, "2026112722001400001", Decimal("29.90"), "CNY", True)
    assert fake_alipay.received[-1]["method"] == "alipay.trade.query"


@pytest.mark.sqlite_only
def test_query_of_a_waiting_trade_is_not_paid(fake_alipay):
    fake_alipay.trades[ORDER.order_no] = {"out_trade_no": ORDER.order_no, "trade_no": "2026112722001400002",
                                          "trade_status": "WAIT_BUYER_PAY", "total_amount": "29.90"}
    assert gateway_for(fake_alipay).query(ORDER).paid is False


@pytest.mark.sqlite_only
def test_query_of_a_trade_alipay_does_not_know_is_none(fake_alipay):
    assert gateway_for(fake_alipay).query(ORDER) is None


@pytest.mark.sqlite_only
@pytest.mark.parametrize("mode", ["error500", "drop", "busy"])
def test_query_trouble_is_retryable(fake_alipay, mode):
    fake_alipay.mode = mode
    with pytest.raises(Retryable):
        gateway_for(fake_alipay).query(ORDER)


@pytest.mark.sqlite_only
def test_query_to_nowhere_is_retryable():
    gateway = AlipayGateway(config={"app_id": APP_ID, "gateway_url": "http://127.0.0.1:9/gateway.do"},
                            secrets={"app_private_key": private_pem(APP_KEY), "alipay_public_key": public_pem(ALIPAY_KEY)})
    with pytest.raises(Retryable):
        gateway.query(ORDER)


@pytest.mark.sqlite_only
@pytest.mark.parametrize("mode, message", [("bad_sign", "signature does not verify"), ("unsigned_refusal", "isv.invalid-app-id")])
def test_an_answer_not_signed_by_alipay_is_not_believed(fake_alipay, mode, message):
    fake_alipay.mode = mode
    fake_alipay.trades[ORDER.order_no] = {"out_trade_no": ORDER.order_no, "trade_no": "T1",
                                          "trade_status": "TRADE_SUCCESS", "total_amount": "29.90"}
    with pytest.raises(KamiError, match=message) as caught:
        gateway_for(fake_alipay).query(ORDER)
    assert not isinstance(caught.value, Retryable)


@pytest.mark.sqlite_only
def test_refund_sends_our_refund_number_as_the_idempotency_key(fake_alipay):
    # when: the same refund asked twice (a retry after a timeout)
    gateway = gateway_for(fake_alipay)
    first = gateway.refund(order=ORDER, trade_no="2026112722001400001", amount=Decimal("29.9"), refund_no="R-0001")
    again = gateway.refund(order=ORDER, trade_no="2026112722001400001", amount=Decimal("29.9"), refund_no="R-0001")
    # then
    assert [(r["out_request_no"], r["refund_amount"], r["out_trade_no"]) for r in fake_alipay.refunds] == [
        ("R-0001", "29.90", ORDER.order_no)] * 2
    assert (first.refund_no, first.gateway_ref, first.done) == ("R-0001", "2026112722001400001", True)
    assert (again.done, again.pending) == (False, True)
    assert fake_alipay.received[-1]["method"] == "alipay.trade.refund"


@pytest.mark.sqlite_only
def test_a_refund_alipay_cannot_do_now_is_retryable(fake_alipay):
    fake_alipay.mode = "busy"
    with pytest.raises(Retryable):
        gateway_for(fake_alipay).refund(order=ORDER, trade_no="T1", amount=Decimal("1.00"), refund_no="R-2")


def test_the_shop_page_draws_the_qr_code_itself(client, make_product, shop):
    # given a product on sale and Alipay in QR mode
    product = make_product("qr-product")
    add_keys(product, ["QR-KEY-1"])
    # when a buyer chooses Alipay on the shop page
    home = client.get("/")
    response = client.post("/buy/qr-product", {"email": "b@example.com", "quantity": "1", "gateway": "alipay",
                                                "csrfmiddlewaretoken": home.cookies.get("csrftoken", "")})
    # then the QR is an inline SVG drawn by the server (nothing loaded from elsewhere), with the order link
    page = response.content.decode()
    assert response.status_code == 200 and "<svg" in page and "segno" in page
    assert 'id="order-link"' in page and "/orders/" in page and "token=" in page
    assert response["Cache-Control"] == "no-store"


# -- close --------------------------------------------------------------------------------------

@pytest.mark.sqlite_only
def test_close_closes_the_waiting_trade_with_a_signed_request(fake_alipay):
    # given: the buyer scanned the code but did not pay
    fake_alipay.trades[ORDER.order_no] = {"out_trade_no": ORDER.order_no, "trade_no": "2026112722001400009",
                                          "trade_status": "WAIT_BUYER_PAY", "total_amount": "29.90"}
    # when
    gateway_for(fake_alipay).close(order=ORDER)
    # then: a signed alipay.trade.close for our order number closed it
    sent = fake_alipay.received[-1]
    assert (sent["method"], json.loads(sent["biz_content"])) == ("alipay.trade.close", {"out_trade_no": ORDER.order_no})
    assert rsa2_verify(APP_KEY.public_key(), alipay_request_content(sent).encode(), sent["sign"])
    assert fake_alipay.closed == [ORDER.order_no]
    assert AlipayGateway.supports_close is True


@pytest.mark.sqlite_only
@pytest.mark.parametrize("status", [None, "TRADE_CLOSED", "TRADE_SUCCESS"])
def test_close_of_a_trade_alipay_does_not_know_or_cannot_close_is_done(fake_alipay, status):
    # given: never scanned (no trade), already closed, or paid meanwhile (the notification flags that)
    if status:
        fake_alipay.trades[ORDER.order_no] = {"out_trade_no": ORDER.order_no, "trade_no": "T2",
                                              "trade_status": status, "total_amount": "29.90"}
    # when / then: no error
    gateway_for(fake_alipay).close(order=ORDER)
    assert fake_alipay.received[-1]["method"] == "alipay.trade.close"
    assert fake_alipay.closed == []


@pytest.mark.sqlite_only
@pytest.mark.parametrize("mode", ["error500", "drop", "busy"])
def test_close_trouble_is_retryable(fake_alipay, mode):
    fake_alipay.mode = mode
    with pytest.raises(Retryable):
        gateway_for(fake_alipay).close(order=ORDER)


@pytest.mark.sqlite_only
def test_a_close_refused_by_alipay_names_the_reason(fake_alipay):
    fake_alipay.mode = "unsigned_refusal"
    with pytest.raises(KamiError, match="isv.invalid-app-id") as caught:
        gateway_for(fake_alipay).close(order=ORDER)
    assert not isinstance(caught.value, Retryable)


def test_the_sweep_closes_an_expired_order_at_alipay(client, make_product, shop, clock_travel):
    # given: an order whose code the buyer scanned and never paid
    order = stocked_order(client, make_product)
    shop.trades[order["order_no"]] = {"out_trade_no": order["order_no"], "trade_no": "2026112722001400010",
                                      "trade_status": "WAIT_BUYER_PAY", "total_amount": "10.00"}
    # when: the payment window and its grace are over
    clock_travel(timedelta(minutes=40))
    result = sweep()
    # then
    assert Order.objects.get(order_no=order["order_no"]).status == Order.Status.EXPIRED
    assert (result["expired"], result["closed"]) == (1, 1)
    assert shop.closed == [order["order_no"]]
    assert nothing_delivered()
