"""PayPal played end to end: orders created against a loopback api-m.paypal.com, webhooks signed
with a test RSA key and self-signed certificate as PayPal signs them, capture, query and refund."""
from __future__ import annotations

import json
import logging
from decimal import Decimal

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from django.test import RequestFactory

from kami.core.edge import inbound_from
from kami.core.errors import BadInput, KamiError, Retryable, VerificationFailed
from kami.delivery.models import OutboxMessage
from kami.fulfilment.checkout import order_info
from kami.orders.models import Order, OrderKey
from kami.payments.gateways.paypal import PayPalGateway
from kami.payments.interface import OrderInfo, Urls
from kami.payments.models import Notification
from kami.payments.registry import gateway_get
from kami.payments.services import gateway_configure
from tests.payments.epay_play import (add_keys, create_order, fixture, last_notification, nothing_delivered, payments_of,
                                      return_url, stored_text)
from tests.payments.paypal_play import (CLIENT_ID, CLIENT_SECRET, WEBHOOK_ID, capture_event, enable_paypal, make_cert,
                                        paypal_order, send, signed_headers)
from tests.payments.paypal_play import fake_paypal  # noqa: F401 (a fixture)

pytestmark = pytest.mark.django_db(transaction=True)
# Tests marked sqlite_only talk to the gateway's loopback fake or parse alone: the same on every engine.


@pytest.fixture(autouse=True)
def secret_never_stored():
    yield
    assert not [row.pk for row in Notification.objects.all() if CLIENT_SECRET in stored_text(row)]


def order_row(order: dict) -> Order:
    return Order.objects.get(order_no=order["order_no"])


def signed(fake, body: bytes, **kw) -> dict:
    return signed_headers(body, cert_url=kw.pop("cert_url", fake.cert_url()), **kw)


# -- create -------------------------------------------------------------------------------------


def test_checkout_creates_a_paypal_order_and_redirects_to_its_approval_link(client, make_product, fake_paypal, caplog):
    # given
    enable_paypal(fake_paypal)
    caplog.set_level(logging.DEBUG)
    # when
    order = paypal_order(client, make_product, quantity=2, price=Decimal("29.90"))
    # then
    token_call, create_call = fake_paypal.requests
    paypal_id = order_row(order).gateway_ref
    assert order["payment"] == {"type": "redirect", "url": f"https://www.sandbox.paypal.com/checkoutnow?token={paypal_id}"}
    assert token_call["path"] == "/v1/oauth2/token"
    assert create_call["headers"]["paypal-request-id"] == order["order_no"]
    sent = json.loads(create_call["body"])
    unit = sent["purchase_units"][0]
    assert (sent["intent"], unit["custom_id"], unit["reference_id"]) == ("CAPTURE", order["order_no"], order["order_no"])
    assert unit["amount"] == {"currency_code": "USD", "value": "59.80"}
    assert sent["payment_source"]["paypal"]["experience_context"]["return_url"] == return_url(order)
    assert not [c for c in fake_paypal.requests if order["token"] in json.dumps(c, default=str)]
    assert CLIENT_SECRET not in caplog.text


def test_the_token_is_fetched_once_and_reused(client, make_product, fake_paypal):
    enable_paypal(fake_paypal)
    paypal_order(client, make_product)
    paypal_order(client, make_product)
    assert fake_paypal.token_requests == 1


@pytest.mark.sqlite_only
def test_whole_yen_and_refused_currencies(fake_paypal):
    gateway = PayPalGateway(config={"client_id": CLIENT_ID, "webhook_id": WEBHOOK_ID, "api_base": fake_paypal.url},
                            secrets={"client_secret": CLIENT_SECRET})
    assert gateway.supports_currency("jpy") and not gateway.supports_currency("HUF") and not gateway.supports_currency("CLP")


@pytest.mark.sqlite_only
def test_wrong_credentials_name_the_settings_and_paypal_down_is_retryable(fake_paypal):
    order = OrderInfo(order_no="261127120000000009", amount=Decimal("5.00"), currency="USD", subject="x", email="")
    urls = Urls(notify="https://shop.example/pay/paypal/notify", ret="https://shop.example/o/9")
    wrong = PayPalGateway(config={"client_id": CLIENT_ID, "api_base": fake_paypal.url}, secrets={"client_secret": "nope"})
    with pytest.raises(KamiError, match="client_id/client_secret were refused"):
        wrong.create_payment(order, urls)
    fake_paypal.mode = "error500"
    right = PayPalGateway(config={"client_id": CLIENT_ID, "api_base": fake_paypal.url}, secrets={"client_secret": CLIENT_SECRET})
    with pytest.raises(Retryable):
        right.create_payment(order, urls)


def test_settings_are_checked_when_saved():
    with pytest.raises(BadInput, match="api_base"):
        gateway_configure(name="paypal", values={"api_base": "api-m.paypal.com"}, actor="test")
    with pytest.raises(BadInput, match="webhook_id"):
        gateway_configure(name="paypal", values={"webhook_id": "x/../y"}, actor="test")


# -- notifications ------------------------------------------------------------------------------


def test_capture_completed_fulfils_the_order(client, make_product, fake_paypal):
    # given
    enable_paypal(fake_paypal)
    order = paypal_order(client, make_product, quantity=2)
    body = capture_event(order_no=order["order_no"], value=order["amount"])
    # when
    response = send(client, body, signed(fake_paypal, body))
    # then
    assert response.status_code == 200
    assert order_row(order).status == "fulfilled"
    assert OrderKey.objects.count() == 2
    assert (last_notification().result, last_notification().trade_no) == ("fulfilled", "2GG279541U471931P")
    assert OutboxMessage.objects.filter(kind="order_keys").count() == 1


def test_the_same_notification_again_is_acknowledged_and_changes_nothing(client, make_product, fake_paypal):
    enable_paypal(fake_paypal)
    order = paypal_order(client, make_product)
    body = capture_event(order_no=order["order_no"], value=order["amount"])
    first = send(client, body, signed(fake_paypal, body))
    again = send(client, body, signed(fake_paypal, body, transmission_id="retry-2", transmission_time="2026-11-28T12:00:00Z"))
    assert (first.status_code, again.status_code) == (200, 200)
    assert payments_of(order["order_no"]) == 1
    assert OrderKey.objects.count() == 1
    assert list(Notification.objects.order_by("id").values_list("result", flat=True)) == ["fulfilled", "duplicate"]
    assert sum(r["path"].startswith("/v1/notifications/certs/") for r in fake_paypal.requests) == 1  # cached


def test_an_approved_order_is_captured_and_fulfilled_then_the_capture_event_is_a_duplicate(client, make_product, fake_paypal):
    # given: the buyer approved on PayPal
    enable_paypal(fake_paypal)
    order = paypal_order(client, make_product)
    paypal_id = order_row(order).gateway_ref
    fake_paypal.approve(paypal_id)
    approved = json.dumps({"id": "WH-APPROVED", "event_type": "CHECKOUT.ORDER.APPROVED", "resource_type": "checkout-order",
                           "resource": {"id": paypal_id, "status": "APPROVED", "intent": "CAPTURE",
                                        "purchase_units": [{"reference_id": order["order_no"], "custom_id": order["order_no"],
                                                            "amount": {"currency_code": "USD", "value": order["amount"]}}]}}).encode()
    # when
    response = send(client, approved, signed(fake_paypal, approved))
    capture_id = fake_paypal.orders[paypal_id]["purchase_units"][0]["payments"]["captures"][0]["id"]
    completed = capture_event(order_no=order["order_no"], value=order["amount"], capture_id=capture_id)
    later = send(client, completed, signed(fake_paypal, completed))
    # then
    assert (response.status_code, later.status_code) == (200, 200)
    assert order_row(order).status == "fulfilled"
    assert list(Notification.objects.order_by("id").values_list("result", flat=True)) == ["fulfilled", "duplicate"]
    capture_call = [r for r in fake_paypal.requests if r["path"].endswith("/capture")][0]
    assert capture_call["headers"]["paypal-request-id"] == f"{order['order_no']}-capture"


@pytest.mark.parametrize("kind,status", [("PAYMENT.CAPTURE.PENDING", "PENDING"), ("PAYMENT.CAPTURE.DENIED", "DECLINED"),
                                         ("PAYMENT.CAPTURE.COMPLETED", "PENDING")])
def test_unpaid_events_are_acknowledged_and_deliver_nothing(client, make_product, fake_paypal, kind, status):
    enable_paypal(fake_paypal)
    order = paypal_order(client, make_product)
    body = capture_event(order_no=order["order_no"], value=order["amount"], kind=kind, status=status)
    response = send(client, body, signed(fake_paypal, body))
    assert response.status_code == 200
    assert (last_notification().result, last_notification().verified) == ("ignored", True)
    assert nothing_delivered()


def test_signed_with_another_key_is_rejected(client, make_product, fake_paypal):
    enable_paypal(fake_paypal)
    order = paypal_order(client, make_product)
    body = capture_event(order_no=order["order_no"], value=order["amount"])
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    response = send(client, body, signed(fake_paypal, body, key=other))
    assert response.status_code == 400
    assert "bad signature" in last_notification().error
    assert nothing_delivered()


@pytest.mark.parametrize("drop", ["HTTP_PAYPAL_TRANSMISSION_SIG", "HTTP_PAYPAL_CERT_URL", "HTTP_PAYPAL_TRANSMISSION_ID"])
def test_a_missing_header_is_rejected(client, make_product, fake_paypal, drop):
    enable_paypal(fake_paypal)
    order = paypal_order(client, make_product)
    body = capture_event(order_no=order["order_no"], value=order["amount"])
    headers = signed(fake_paypal, body)
    headers.pop(drop)
    assert send(client, body, headers).status_code == 400
    assert nothing_delivered()


def test_another_webhook_id_or_an_edited_header_is_rejected(client, make_product, fake_paypal):
    enable_paypal(fake_paypal)
    order = paypal_order(client, make_product)
    body = capture_event(order_no=order["order_no"], value=order["amount"])
    other_hook = send(client, body, signed(fake_paypal, body, webhook_id="OTHERWEBHOOK"))
    headers = signed(fake_paypal, body)
    headers["HTTP_PAYPAL_TRANSMISSION_TIME"] = "2026-11-27T12:00:01Z"
    edited = send(client, body, headers)
    assert (other_hook.status_code, edited.status_code) == (400, 400)
    assert nothing_delivered()


def test_another_orders_number_without_re_signing_is_rejected(client, make_product, fake_paypal):
    enable_paypal(fake_paypal)
    cheap = paypal_order(client, make_product, price=Decimal("1.00"))
    dear = paypal_order(client, make_product, price=Decimal("99.00"))
    body = capture_event(order_no=cheap["order_no"], value="99.00")
    headers = signed(fake_paypal, body)
    response = send(client, body.replace(cheap["order_no"].encode(), dear["order_no"].encode()), headers)
    assert response.status_code == 400
    assert order_row(dear).status == order_row(cheap).status == "pending"
    assert nothing_delivered()


@pytest.mark.parametrize("changes", [{"value": "0.01"}, {"currency": "EUR"}], ids=["amount", "currency"])
def test_the_wrong_money_is_flagged_and_delivers_no_keys(client, make_product, fake_paypal, changes):
    enable_paypal(fake_paypal)
    order = paypal_order(client, make_product)
    body = capture_event(order_no=order["order_no"], **{"value": order["amount"], **changes})
    response = send(client, body, signed(fake_paypal, body))
    assert response.status_code == 200
    assert (order_row(order).status, order_row(order).flag_reason) == ("flagged", "amount_mismatch")
    assert nothing_delivered()


@pytest.mark.parametrize("cert", ["wrong-name", "expired"])
def test_a_certificate_not_fit_for_signing_is_refused(client, make_product, fake_paypal, cert):
    enable_paypal(fake_paypal)
    fake_paypal.certs["CERT-bad"] = make_cert(common_name="evil.example") if cert == "wrong-name" else make_cert(days=-1)
    order = paypal_order(client, make_product)
    body = capture_event(order_no=order["order_no"], value=order["amount"])
    response = send(client, body, signed(fake_paypal, body, cert_url=fake_paypal.cert_url("CERT-bad")))
    assert response.status_code == 400
    assert nothing_delivered()


@pytest.mark.sqlite_only
@pytest.mark.parametrize("url", [
    "https://evil.example/v1/notifications/certs/CERT-1",
    "http://api.paypal.com/v1/notifications/certs/CERT-1",
    "https://api.paypal.com@evil.example/v1/notifications/certs/CERT-1",
    "https://api.paypal.com.evil.example/cert",
    "https://api.paypal.com:8443/cert",
    "file:///etc/passwd",
])
def test_the_production_class_fetches_certificates_only_from_paypal_over_https(url):
    # given: the class as shipped (no test relaxations), with a fetch that must never happen
    body = capture_event(order_no="261127120000000005", value="5.00")
    request = RequestFactory().post("/pay/paypal/notify", data=body, content_type="application/json",
                                    **signed_headers(body, cert_url=url))
    gateway = PayPalGateway(config={"client_id": CLIENT_ID, "webhook_id": WEBHOOK_ID}, secrets={"client_secret": CLIENT_SECRET})
    # when / then
    with pytest.raises(VerificationFailed, match="not on PayPal's API hosts"):
        gateway.parse_notification(inbound_from(request))


@pytest.mark.sqlite_only
def test_the_shipped_allow_list_is_paypals_api_hosts_only():
    assert PayPalGateway.ALLOWED_CERT_HOSTS == ("api.paypal.com", "api.sandbox.paypal.com", "api-m.paypal.com",
                                                "api-m.sandbox.paypal.com")
    assert PayPalGateway.CERT_SCHEMES == ("https",)


@pytest.mark.sqlite_only
def test_an_empty_webhook_id_refuses_everything(fake_paypal):
    body = capture_event(order_no="261127120000000006", value="5.00")
    request = RequestFactory().post("/pay/paypal/notify", data=body, content_type="application/json",
                                    **signed_headers(body, cert_url=fake_paypal.cert_url(), webhook_id=""))
    gateway = PayPalGateway(config={"client_id": CLIENT_ID, "webhook_id": " "}, secrets={"client_secret": ""})
    with pytest.raises(VerificationFailed, match="webhook_id is empty"):
        gateway.parse_notification(inbound_from(request))


@pytest.mark.parametrize("name,delivered", [("paypal_capture_completed", True), ("paypal_capture_pending", False)])
def test_recorded_events_are_accepted_as_sent(client, make_product, fake_paypal, name, delivered):
    sample = fixture(name)
    enable_paypal(fake_paypal)
    item = make_product(price=Decimal(sample["price"]), currency=sample["currency"])
    add_keys(item, ["REC-1"])
    order = create_order(client, item, gateway="paypal")
    Order.objects.filter(order_no=order["order_no"]).update(order_no=sample["order_no"])
    body = sample["body"].encode()
    response = send(client, body, signed(fake_paypal, body, transmission_id=sample["transmission_id"],
                                         transmission_time=sample["transmission_time"]))
    assert response.status_code == 200
    assert (Order.objects.get(order_no=sample["order_no"]).status == "fulfilled") is delivered


# -- query and refund ---------------------------------------------------------------------------


def test_query_captures_an_approved_order_and_reports_it_paid(client, make_product, fake_paypal):
    # given
    enable_paypal(fake_paypal)
    order = order_info(order_row(paypal_order(client, make_product)))
    gateway = gateway_get("paypal")
    # when / then: not yet approved, then approved (the webhook was lost): captured by the query
    assert gateway.query(order).paid is False
    fake_paypal.approve(order.gateway_ref)
    notice = gateway.query(order)
    assert (notice.order_no, notice.amount, notice.currency, notice.paid) == (order.order_no, Decimal("29.90"), "USD", True)
    assert notice.trade_no == fake_paypal.orders[order.gateway_ref]["purchase_units"][0]["payments"]["captures"][0]["id"]
    assert gateway.query(order).trade_no == notice.trade_no  # completed now: read, not captured again


@pytest.mark.sqlite_only
def test_query_without_a_paypal_order_or_an_unknown_one_is_none(fake_paypal):
    gateway = PayPalGateway(config={"client_id": CLIENT_ID, "api_base": fake_paypal.url}, secrets={"client_secret": CLIENT_SECRET})
    order = OrderInfo(order_no="261127120000000007", amount=Decimal("1.00"), currency="USD", subject="", email="")
    assert gateway.query(order) is None
    assert gateway.query(OrderInfo(**{**order.__dict__, "gateway_ref": "5O19UNKNOWN"})) is None


def test_refund_is_sent_once_however_often_it_is_asked(client, make_product, fake_paypal):
    # given: a captured order
    enable_paypal(fake_paypal)
    order = order_info(order_row(paypal_order(client, make_product)))
    gateway = gateway_get("paypal")
    fake_paypal.approve(order.gateway_ref)
    capture = gateway.query(order).trade_no
    # when
    first = gateway.refund(order=order, trade_no=capture, amount=Decimal("10.00"), refund_no="R-1", reason="buyer asked")
    second = gateway.refund(order=order, trade_no=capture, amount=Decimal("10.00"), refund_no="R-1", reason="buyer asked")
    # then
    assert (first.done, first.gateway_ref) == (True, second.gateway_ref)
    (refund,) = fake_paypal.refunds
    assert refund["amount"] == {"currency_code": "USD", "value": "10.00"}
    assert fake_paypal.requests[-1]["headers"]["paypal-request-id"] == "R-1"


def test_a_pending_refund_says_so_and_an_unknown_capture_says_where_to_look(client, make_product, fake_paypal):
    enable_paypal(fake_paypal)
    order = order_info(order_row(paypal_order(client, make_product)))
    gateway = gateway_get("paypal")
    fake_paypal.approve(order.gateway_ref)
    capture = gateway.query(order).trade_no
    fake_paypal.mode = "refund_pending"
    pending = gateway.refund(order=order, trade_no=capture, amount=Decimal("29.90"), refund_no="R-2")
    assert (pending.done, pending.pending) == (False, True)
    with pytest.raises(KamiError, match="not found"):
        gateway.refund(order=order, trade_no="NOSUCHCAPTURE", amount=Decimal("1.00"), refund_no="R-3")
    with pytest.raises(KamiError, match="not a PayPal capture id"):
        gateway.refund(order=order, trade_no="../../v1/x", amount=Decimal("1.00"), refund_no="R-4")
