"""Stripe Checkout played end to end: sessions created against a loopback api.stripe.com,
webhooks signed exactly as Stripe signs them, refunds and queries against the fake."""
from __future__ import annotations

import json
import logging
import time
from datetime import timedelta
from decimal import Decimal

import pytest
from django.test import RequestFactory

from kami.core.edge import inbound_from
from kami.core.errors import BadInput, KamiError, Retryable, VerificationFailed
from kami.delivery.models import OutboxMessage
from kami.fulfilment.backfill import sweep
from kami.fulfilment.checkout import order_info
from kami.orders.models import Order, OrderKey
from kami.payments.gateways.stripe_checkout import StripeGateway
from kami.payments.interface import OrderInfo, Urls
from kami.payments.models import Notification
from kami.payments.registry import gateway_get
from kami.payments.services import gateway_configure
from tests.payments.epay_play import (add_keys, create_order, fixture, last_notification, nothing_delivered, payments_of,
                                      return_url, stored_text)
from tests.payments.stripe_play import SECRET_KEY, WEBHOOK_SECRET, enable_stripe, send, session_event, signature, stripe_order
from tests.payments.stripe_play import fake_stripe  # noqa: F401 (a fixture)

pytestmark = pytest.mark.django_db(transaction=True)
# Tests marked sqlite_only talk to the gateway's loopback fake or parse alone: the same on every engine.


@pytest.fixture(autouse=True)
def secrets_never_stored():
    yield
    assert not [row.pk for row in Notification.objects.all()
                if SECRET_KEY in stored_text(row) or WEBHOOK_SECRET in stored_text(row)]


def paid_event(order: dict, **changes) -> bytes:
    cents = int(Decimal(order["amount"]) * 100)
    return session_event(order_no=order["order_no"], amount_total=changes.pop("amount_total", cents), **changes)


def order_row(order: dict) -> Order:
    return Order.objects.get(order_no=order["order_no"])


# -- create -------------------------------------------------------------------------------------


def test_checkout_creates_a_session_and_redirects_to_it(client, make_product, fake_stripe, caplog):
    # given
    enable_stripe(fake_stripe)
    caplog.set_level(logging.DEBUG)
    # when
    order = stripe_order(client, make_product, quantity=2, price=Decimal("29.90"))
    # then: one form-encoded POST, authorised, idempotent on the order number, minor units
    (call,) = fake_stripe.requests
    session = fake_stripe.sessions[order_row(order).gateway_ref]
    assert order["payment"] == {"type": "redirect", "url": session["url"]}
    assert (call["method"], call["path"]) == ("POST", "/v1/checkout/sessions")
    assert call["headers"]["authorization"] == f"Bearer {SECRET_KEY}"
    assert call["headers"]["idempotency-key"] == order["order_no"]
    form = call["form"]
    assert (form["mode"], form["line_items[0][quantity]"]) == ("payment", "1")
    assert (form["line_items[0][price_data][unit_amount]"], form["line_items[0][price_data][currency]"]) == ("5980", "usd")
    assert form["client_reference_id"] == form["metadata[order_no]"] == order["order_no"]
    assert form["success_url"] == form["cancel_url"] == return_url(order)
    assert order["token"] not in json.dumps(call, default=str)  # the order token never goes to a third party
    assert "expires_at" not in form  # the default 30-minute order is under Stripe's minimum
    assert SECRET_KEY not in caplog.text


def test_an_order_open_an_hour_expires_its_session_with_it(client, make_product, fake_stripe, settings):
    # given
    settings.KAMI_ORDER_TTL_MINUTES = 60
    enable_stripe(fake_stripe)
    # when
    order = stripe_order(client, make_product)
    # then
    sent = fake_stripe.requests[0]["form"]["expires_at"]
    assert int(sent) == int(order_row(order).expires_at.timestamp())


@pytest.mark.sqlite_only
def test_zero_decimal_currencies_are_sent_in_whole_units_and_mismatched_ones_refused(fake_stripe):
    # given
    gateway = StripeGateway(config={"api_base": fake_stripe.url}, secrets={"secret_key": SECRET_KEY})
    yen = OrderInfo(order_no="261127120000000001", amount=Decimal("500"), currency="JPY", subject="Gift", email="")
    # when
    gateway.create_payment(yen, Urls(notify="https://shop.example/pay/stripe/notify", ret="https://shop.example/o/1"))
    # then
    assert fake_stripe.requests[0]["form"]["line_items[0][price_data][unit_amount]"] == "500"
    assert gateway.supports_currency("usd") and not gateway.supports_currency("BHD") and not gateway.supports_currency("ISK")


@pytest.mark.sqlite_only
def test_stripe_down_is_retryable_and_a_wrong_key_says_which_setting(fake_stripe):
    order = OrderInfo(order_no="261127120000000002", amount=Decimal("5.00"), currency="USD", subject="x", email="")
    urls = Urls(notify="https://shop.example/pay/stripe/notify", ret="https://shop.example/o/2")
    with pytest.raises(KamiError, match="secret_key was refused"):
        StripeGateway(config={"api_base": fake_stripe.url}, secrets={"secret_key": "sk_test_wrong"}).create_payment(order, urls)
    fake_stripe.mode = "error500"
    with pytest.raises(Retryable):
        StripeGateway(config={"api_base": fake_stripe.url}, secrets={"secret_key": SECRET_KEY}).create_payment(order, urls)


@pytest.mark.sqlite_only
def test_api_base_must_be_an_address():
    with pytest.raises(BadInput, match="api_base"):
        gateway_configure(name="stripe", values={"api_base": "api.stripe.com"}, actor="test")
    with pytest.raises(BadInput, match="missing secret_key, webhook_secret"):
        gateway_configure(name="stripe", values={}, enable=True, actor="test")


# -- notifications ------------------------------------------------------------------------------


def test_paid_notification_fulfils_the_order(client, make_product, fake_stripe):
    # given
    enable_stripe(fake_stripe)
    order = stripe_order(client, make_product, quantity=2)
    # when
    response = send(client, paid_event(order))
    # then
    assert response.status_code == 200
    row = order_row(order)
    assert row.status == "fulfilled"
    assert OrderKey.objects.filter(order=row).count() == 2
    assert (last_notification().result, last_notification().trade_no) == ("fulfilled", "pi_3Kami0001")
    assert OutboxMessage.objects.filter(kind="order_keys").count() == 1


def test_the_same_notification_again_is_acknowledged_and_changes_nothing(client, make_product, fake_stripe):
    # given
    enable_stripe(fake_stripe)
    order = stripe_order(client, make_product)
    body = paid_event(order)
    send(client, body)
    # when
    again = send(client, body)
    # then
    assert again.status_code == 200
    assert payments_of(order["order_no"]) == 1
    assert OrderKey.objects.count() == 1
    assert list(Notification.objects.order_by("id").values_list("result", flat=True)) == ["fulfilled", "duplicate"]


def test_a_delayed_payment_is_delivered_when_it_succeeds_not_when_the_session_completes(client, make_product, fake_stripe):
    # given
    enable_stripe(fake_stripe)
    order = stripe_order(client, make_product)
    # when: SEPA: completed but unpaid, then async_payment_succeeded
    first = send(client, paid_event(order, payment_status="unpaid", event_id="evt_1"))
    delivered_early = not nothing_delivered()
    second = send(client, paid_event(order, kind="checkout.session.async_payment_succeeded", event_id="evt_2"))
    # then
    assert (first.status_code, second.status_code, delivered_early) == (200, 200, False)
    assert list(Notification.objects.order_by("id").values_list("result", flat=True)) == ["ignored", "fulfilled"]
    assert order_row(order).status == "fulfilled"


@pytest.mark.parametrize("kind", ["checkout.session.expired", "checkout.session.async_payment_failed"])
def test_unpaid_events_are_acknowledged_and_deliver_nothing(client, make_product, fake_stripe, kind):
    enable_stripe(fake_stripe)
    order = stripe_order(client, make_product)
    response = send(client, paid_event(order, kind=kind, payment_status="unpaid", intent=None))
    assert response.status_code == 200
    assert (last_notification().result, last_notification().verified) == ("ignored", True)
    assert order_row(order).status == "pending"
    assert nothing_delivered()


def test_events_about_other_objects_are_acknowledged_and_ignored(client, make_product, fake_stripe):
    # given: the endpoint subscribed to more than Kami needs
    enable_stripe(fake_stripe)
    order = stripe_order(client, make_product)
    body = json.dumps({"id": "evt_pi", "object": "event", "type": "payment_intent.succeeded", "data": {"object": {
        "id": "pi_3X", "object": "payment_intent", "amount": 2990, "currency": "usd", "status": "succeeded",
        "metadata": {"order_no": order["order_no"]}}}}).encode()
    # when
    response = send(client, body)
    # then
    assert response.status_code == 200
    assert last_notification().result == "ignored"
    assert nothing_delivered()


@pytest.mark.parametrize("header", [
    "", "garbage", "t=,v1=", f"t={int(time.time())},v0=deadbeef", "t=1,v1=é",
], ids=["missing", "garbage", "empty-fields", "no-v1", "non-ascii"])
def test_a_malformed_signature_header_is_rejected(client, make_product, fake_stripe, header):
    enable_stripe(fake_stripe)
    order = stripe_order(client, make_product)
    response = send(client, paid_event(order), header)
    assert response.status_code == 400
    assert (last_notification().result, last_notification().verified) == ("rejected", False)
    assert nothing_delivered()


def test_signed_with_another_secret_is_rejected(client, make_product, fake_stripe):
    enable_stripe(fake_stripe)
    order = stripe_order(client, make_product)
    body = paid_event(order)
    response = send(client, body, signature(body, secret="whsec_someone_else"))
    assert response.status_code == 400
    assert "bad signature" in last_notification().error
    assert nothing_delivered()


def test_one_good_v1_among_several_is_enough_as_when_secrets_roll(client, make_product, fake_stripe):
    enable_stripe(fake_stripe)
    order = stripe_order(client, make_product)
    body = paid_event(order)
    good = signature(body)
    old = signature(body, secret="whsec_previous").split(",")[1]
    response = send(client, body, f"{good},{old}")
    assert response.status_code == 200 and order_row(order).status == "fulfilled"


def test_a_stale_timestamp_is_rejected_even_when_correctly_signed(client, make_product, fake_stripe):
    # given: a genuine event, replayed six minutes later
    enable_stripe(fake_stripe)
    order = stripe_order(client, make_product)
    body = paid_event(order)
    # when
    response = send(client, body, signature(body, timestamp=int(time.time()) - 360))
    # then
    assert response.status_code == 400
    assert "older than 5 minutes" in last_notification().error
    assert nothing_delivered()


@pytest.mark.parametrize("ahead, accepted", [(30, True), (3600, False)])
def test_a_timestamp_ahead_of_the_clock_is_accepted_only_within_a_minute(client, make_product, fake_stripe, ahead, accepted):
    # given: an event signed (with the real secret) as if sent an hour from now, kept to replay later
    enable_stripe(fake_stripe)
    order = stripe_order(client, make_product)
    body = paid_event(order)
    # when
    response = send(client, body, signature(body, timestamp=int(time.time()) + ahead))
    # then
    assert (response.status_code == 200) is accepted
    assert (order_row(order).status == "fulfilled") is accepted
    if not accepted:
        assert "in the future" in last_notification().error and nothing_delivered()


@pytest.mark.parametrize("secret_key, livemode", [(SECRET_KEY, True), ("sk_live_51Kami" + "0" * 50, False)])
def test_an_event_from_the_other_mode_is_refused(client, make_product, fake_stripe, secret_key, livemode):
    # given a shop with a test (or live) key, and a correctly signed event of the other mode
    enable_stripe(fake_stripe)
    order = stripe_order(client, make_product)
    gateway_configure(name="stripe", values={"secret_key": secret_key}, actor="test")
    body = paid_event(order).replace(b'"livemode": false', b'"livemode": ' + json.dumps(livemode).encode())
    assert json.loads(body)["livemode"] is livemode
    # when
    response = send(client, body)
    # then
    assert response.status_code == 400 and order_row(order).status == "pending"
    assert "livemode" in last_notification().error and nothing_delivered()


def test_another_orders_number_without_re_signing_is_rejected(client, make_product, fake_stripe):
    # given: a signed event for a cheap order, edited to name a dearer one
    enable_stripe(fake_stripe)
    cheap = stripe_order(client, make_product, price=Decimal("1.00"))
    dear = stripe_order(client, make_product, price=Decimal("99.00"))
    body = paid_event(cheap)
    header = signature(body)
    forged = body.replace(cheap["order_no"].encode(), dear["order_no"].encode())
    # when
    response = send(client, forged, header)
    # then
    assert response.status_code == 400
    assert order_row(dear).status == order_row(cheap).status == "pending"
    assert nothing_delivered()


@pytest.mark.parametrize("changes", [{"amount_total": 1}, {"currency": "eur"}], ids=["amount", "currency"])
def test_the_wrong_money_is_flagged_and_delivers_no_keys(client, make_product, fake_stripe, changes):
    # given: correctly signed (Stripe says so), but not what the order costs
    enable_stripe(fake_stripe)
    order = stripe_order(client, make_product)
    # when
    response = send(client, paid_event(order, **changes))
    # then: acknowledged (the money moved; a human decides), flagged, nothing delivered
    assert response.status_code == 200
    assert (order_row(order).status, order_row(order).flag_reason) == ("flagged", "amount_mismatch")
    assert last_notification().result == "flagged"
    assert nothing_delivered()


@pytest.mark.sqlite_only
def test_an_empty_webhook_secret_refuses_everything_even_signed_with_it():
    body = session_event(order_no="261127120000000003", amount_total=500)
    request = RequestFactory().post("/pay/stripe/notify", data=body, content_type="application/json",
                                    HTTP_STRIPE_SIGNATURE=signature(body, secret=""))
    for secret in ("", "   "):
        gateway = StripeGateway(config={}, secrets={"secret_key": SECRET_KEY, "webhook_secret": secret})
        with pytest.raises(VerificationFailed, match="webhook_secret is empty"):
            gateway.parse_notification(inbound_from(request))


@pytest.mark.sqlite_only
@pytest.mark.parametrize("body", [b"\xff\xfe not utf-8", b"[]", b'{"type": "x"}', b"not json"],
                         ids=["binary", "list", "no-data", "not-json"])
def test_signed_nonsense_is_rejected_not_crashed_on(body):
    request = RequestFactory().post("/pay/stripe/notify", data=body, content_type="application/json",
                                    HTTP_STRIPE_SIGNATURE=signature(body))
    gateway = StripeGateway(config={}, secrets={"secret_key": SECRET_KEY, "webhook_secret": WEBHOOK_SECRET})
    with pytest.raises(VerificationFailed):
        gateway.parse_notification(inbound_from(request))


@pytest.mark.parametrize("names,delivered", [
    (["stripe_session_completed_paid"], True),
    (["stripe_session_completed_unpaid"], False),
    (["stripe_session_completed_unpaid", "stripe_async_payment_succeeded"], True),
])
def test_recorded_events_are_accepted_as_sent(client, make_product, fake_stripe, names, delivered):
    # given: an order with the recorded number and price
    samples = [fixture(name) for name in names]
    enable_stripe(fake_stripe)
    item = make_product(price=Decimal(samples[0]["price"]), currency=samples[0]["currency"])
    add_keys(item, ["REC-1"])
    order = create_order(client, item, gateway="stripe")
    Order.objects.filter(order_no=order["order_no"]).update(order_no=samples[0]["order_no"])
    # when: each body byte for byte, signed now
    answers = [send(client, sample["body"].encode()).status_code for sample in samples]
    # then
    assert answers == [200] * len(samples)
    assert (Order.objects.get(order_no=samples[0]["order_no"]).status == "fulfilled") is delivered
    assert nothing_delivered() is not delivered


# -- query and refund ---------------------------------------------------------------------------


def test_query_reads_the_session_kami_created(client, make_product, fake_stripe):
    # given
    enable_stripe(fake_stripe)
    order = order_info(order_row(stripe_order(client, make_product)))
    gateway = gateway_get("stripe")
    # when / then: open, then paid
    assert gateway.query(order).paid is False
    intent = fake_stripe.pay(order.gateway_ref)["payment_intent"]
    notice = gateway.query(order)
    assert (notice.order_no, notice.trade_no, notice.amount, notice.currency, notice.paid) == (
        order.order_no, intent, Decimal("29.90"), "USD", True)


@pytest.mark.sqlite_only
def test_query_without_a_session_or_for_an_unknown_one_is_none(fake_stripe):
    gateway = StripeGateway(config={"api_base": fake_stripe.url}, secrets={"secret_key": SECRET_KEY})
    order = OrderInfo(order_no="261127120000000004", amount=Decimal("1.00"), currency="USD", subject="", email="")
    assert gateway.query(order) is None
    assert fake_stripe.requests == []
    assert gateway.query(OrderInfo(**{**order.__dict__, "gateway_ref": "cs_test_gone"})) is None


def test_refund_is_sent_once_however_often_it_is_asked(client, make_product, fake_stripe):
    # given: a paid order
    enable_stripe(fake_stripe)
    row = order_row(stripe_order(client, make_product))
    intent = fake_stripe.pay(row.gateway_ref)["payment_intent"]
    gateway, order = gateway_get("stripe"), order_info(row)
    # when: asked twice with the same refund number
    first = gateway.refund(order=order, trade_no=intent, amount=Decimal("10.00"), refund_no="R-1", reason="buyer asked")
    second = gateway.refund(order=order, trade_no=intent, amount=Decimal("10.00"), refund_no="R-1", reason="buyer asked")
    # then
    assert (first.done, first.pending, first.gateway_ref) == (True, False, second.gateway_ref)
    (refund,) = fake_stripe.refunds
    assert (refund["amount"], refund["payment_intent"], refund["metadata"]["order_no"]) == (1000, intent, row.order_no)
    assert fake_stripe.requests[-1]["headers"]["idempotency-key"] == "R-1"


def test_a_pending_refund_says_so_and_a_refused_one_says_why(client, make_product, fake_stripe):
    enable_stripe(fake_stripe)
    row = order_row(stripe_order(client, make_product))
    intent = fake_stripe.pay(row.gateway_ref)["payment_intent"]
    gateway, order = gateway_get("stripe"), order_info(row)
    fake_stripe.mode = "refund_pending"
    pending = gateway.refund(order=order, trade_no=intent, amount=Decimal("29.90"), refund_no="R-2")
    assert (pending.done, pending.pending) == (False, True)
    with pytest.raises(KamiError, match="greater than unrefunded"):
        gateway.refund(order=order, trade_no=intent, amount=Decimal("1.00"), refund_no="R-3")
    with pytest.raises(KamiError, match="dashboard"):
        gateway.refund(order=order, trade_no="cs_test_x", amount=Decimal("1.00"), refund_no="R-4")


# -- close --------------------------------------------------------------------------------------


def test_close_expires_the_orders_checkout_session(client, make_product, fake_stripe):
    # given
    enable_stripe(fake_stripe)
    order = order_info(order_row(stripe_order(client, make_product)))
    # when
    gateway_get("stripe").close(order=order)
    # then: an authorised, idempotent POST expired exactly the order's session
    call = fake_stripe.requests[-1]
    assert (call["method"], call["path"]) == ("POST", f"/v1/checkout/sessions/{order.gateway_ref}/expire")
    assert call["headers"]["authorization"] == f"Bearer {SECRET_KEY}"
    assert call["headers"]["idempotency-key"] == f"expire-{order.gateway_ref}"
    assert fake_stripe.expired == [order.gateway_ref]
    assert fake_stripe.sessions[order.gateway_ref]["status"] == "expired"


@pytest.mark.parametrize("state", ["expired", "paid", "unknown"])
def test_close_of_a_session_already_expired_paid_or_unknown_is_done(client, make_product, fake_stripe, state):
    # given
    enable_stripe(fake_stripe)
    order = order_info(order_row(stripe_order(client, make_product)))
    if state == "expired":
        fake_stripe.sessions[order.gateway_ref]["status"] = "expired"
    elif state == "paid":
        fake_stripe.pay(order.gateway_ref)  # the notification path flags a payment after expiry
    else:
        del fake_stripe.sessions[order.gateway_ref]
    # when / then: no error, nothing expired
    gateway_get("stripe").close(order=order)
    assert fake_stripe.expired == []
    assert any(r["path"].endswith("/expire") for r in fake_stripe.requests)


@pytest.mark.sqlite_only
def test_close_without_a_session_asks_nothing(fake_stripe):
    gateway = StripeGateway(config={"api_base": fake_stripe.url}, secrets={"secret_key": SECRET_KEY})
    gateway.close(order=OrderInfo(order_no="261127120000000005", amount=Decimal("1.00"), currency="USD", subject="",
                                  email=""))
    assert fake_stripe.requests == []


def test_close_trouble_is_retryable(client, make_product, fake_stripe):
    enable_stripe(fake_stripe)
    order = order_info(order_row(stripe_order(client, make_product)))
    fake_stripe.mode = "error500"
    with pytest.raises(Retryable):
        gateway_get("stripe").close(order=order)
    assert fake_stripe.sessions[order.gateway_ref]["status"] == "open"


def test_the_sweep_expires_the_session_of_an_expired_order(client, make_product, fake_stripe, clock_travel):
    # given
    enable_stripe(fake_stripe)
    order = stripe_order(client, make_product)
    session_id = order_row(order).gateway_ref
    # when: the payment window and its grace are over
    clock_travel(timedelta(minutes=40))
    result = sweep()
    # then
    assert order_row(order).status == Order.Status.EXPIRED
    assert (result["expired"], result["closed"]) == (1, 1)
    assert fake_stripe.expired == [session_id]
    assert nothing_delivered()
