"""Manual products and fulfilment by hand: a `manual` product is always in stock, its paid order
waits for staff (once, however many notifications arrive), and order_fulfil_manually delivers
what staff enter through the usual key machinery — for manual orders and awaiting-stock ones."""
from __future__ import annotations

from decimal import Decimal

import pytest
from django.test import Client

from kami.audit.models import AuditLog
from kami.core.errors import BadInput, Conflict, NotFound
from kami.delivery.models import OutboxMessage
from kami.fulfilment.manual import order_fulfil_manually
from kami.fulfilment.refund import order_refund
from kami.orders.models import Order, OrderKey
from kami.orders.selectors import order_keys_plaintext, orders_awaiting_staff
from kami.orders.services import order_create
from kami.payments.models import Notification
from kami.stock.models import Key
from tests.factories import add_keys, make_orders
from tests.sandbox_play import enable_sandbox, sandbox_notify

pytestmark = pytest.mark.django_db

FIELDS = [{"name": "phone", "label": "Phone to top up", "required": True, "max_length": 20}]


def paid(order, trade_no=None):
    response = sandbox_notify(Client(), order_no=order.order_no, amount=str(order.amount), trade_no=trade_no)
    assert response.content == b"ok"
    order.refresh_from_db()
    return order


@pytest.fixture
def topup(make_product):
    enable_sandbox()
    return make_product("topup", name="Phone top-up", kind="manual", price=Decimal("50.00"), custom_fields=FIELDS)


def manual_order(product, quantity=1, email="buyer@example.com"):
    return order_create(product=product, quantity=quantity, email=email, gateway="sandbox",
                        custom_values={"phone": "13800000000"})


def test_a_manual_product_needs_no_keys_to_be_on_sale(client, topup):
    # when
    page = client.get("/p/topup", HTTP_ACCEPT_LANGUAGE="en").content.decode()
    order, _ = manual_order(topup, quantity=3)
    # then
    assert '<button type="submit">' in page and "A member of our staff delivers this" in page
    assert order.status == "pending" and order.amount == Decimal("150.00")


def test_payment_parks_the_order_for_staff_once_however_often_it_is_notified(client, topup):
    # given a pending order of a manual product
    order, token = manual_order(topup)
    # when the gateway notifies three times (the same trade twice, then a replay)
    paid(order)
    paid(order)
    paid(order)
    # then it waits for staff: no key claimed, one event, one alert with the buyer's answers
    assert order.status == "awaiting_manual" and order.paid_at is not None
    assert not OrderKey.objects.filter(order=order).exists()
    assert order.events.filter(kind="awaiting_manual").count() == 1
    alerts = OutboxMessage.objects.filter(kind="admin_alert", payload__event="awaiting_manual")
    assert alerts.count() == 1 and "Phone to top up: 13800000000" in alerts.get().payload["body"]
    assert not OutboxMessage.objects.filter(kind="order_keys").exists()
    assert list(Notification.objects.values_list("result", flat=True).order_by("id")) == [
        "awaiting_manual", "duplicate", "duplicate"]
    # and the buyer's page says a person is on it
    page = client.get(f"/orders/{order.order_no}?token={token}", HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert 'data-status="awaiting_manual"' in page and "Phone to top up" in page and "13800000000" in page


def test_staff_deliver_a_manual_order_through_the_key_machinery(client, topup):
    # given a paid manual order
    order, token = manual_order(topup)
    paid(order)
    # when staff enter two lines for one unit
    done = order_fulfil_manually(order_no=order.order_no, contents=["Topped up 50", "Receipt R-77"],
                                 actor="alice", ip="10.0.0.9")
    # then it is fulfilled, the lines are sealed keys linked to it, the buyer is emailed, the audit says who
    assert done.status == "fulfilled" and done.fulfilled_at is not None
    assert [k.reveal() for k in order_keys_plaintext(order=done)] == ["Topped up 50", "Receipt R-77"]
    assert Key.objects.filter(product=topup, status="sold").count() == 2
    assert OutboxMessage.objects.filter(kind="order_keys", payload__order_id=order.pk).count() == 1
    log = AuditLog.objects.get(action="order_fulfil_manually")
    assert (log.actor, log.ip, log.object_id, log.detail["was"]) == ("alice", "10.0.0.9", order.order_no, "awaiting_manual")
    page = client.get(f"/orders/{order.order_no}?token={token}").content.decode()
    assert "Receipt R-77" in page


def test_the_same_text_may_be_delivered_to_two_manual_orders(topup):
    # given two paid manual orders
    first = paid(manual_order(topup, email="a@example.com")[0])
    second = paid(manual_order(topup, email="b@example.com")[0])
    # when / then
    order_fulfil_manually(order_no=first.order_no, contents=["done"], actor="alice")
    order_fulfil_manually(order_no=second.order_no, contents=["done"], actor="alice")
    assert Order.objects.filter(status="fulfilled").count() == 2


def test_an_awaiting_stock_order_takes_exactly_its_quantity_of_new_keys(make_product):
    # given an order of 2 paid when one of the two keys had been voided
    enable_sandbox()
    product = make_product()
    old, voided = add_keys(product, ["OLD-1", "OLD-2"])
    (order,) = make_orders(product, [2])
    Key.objects.filter(pk=voided.pk).update(status="void")
    paid(order)
    assert order.status == "awaiting_stock"
    # when / then: the count must match, a key already in stock is refused, then it works
    with pytest.raises(BadInput, match="exactly 2 keys"):
        order_fulfil_manually(order_no=order.order_no, contents=["NEW-1"], actor="alice")
    with pytest.raises(BadInput, match="line 2: this key is already"):
        order_fulfil_manually(order_no=order.order_no, contents=["NEW-1", "OLD-1"], actor="alice")
    with pytest.raises(BadInput, match="line 2: this key is already"):
        order_fulfil_manually(order_no=order.order_no, contents=["NEW-1", " NEW-1 "], actor="alice")
    done = order_fulfil_manually(order_no=order.order_no, contents=["NEW-1", "NEW-2"], actor="alice")
    assert [k.reveal() for k in order_keys_plaintext(order=done)] == ["NEW-1", "NEW-2"]
    assert OrderKey.objects.filter(order=done, exclusive_key__isnull=False).count() == 2
    assert Key.objects.get(product=product, status="available").pk == old.pk  # OLD-1 untouched


def test_only_waiting_orders_can_be_fulfilled_by_hand(topup):
    # given a pending order and a delivered one
    pending, _ = manual_order(topup, email="a@example.com")
    delivered = paid(manual_order(topup, email="b@example.com")[0])
    order_fulfil_manually(order_no=delivered.order_no, contents=["done"], actor="alice")
    # when / then
    with pytest.raises(Conflict, match="is pending"):
        order_fulfil_manually(order_no=pending.order_no, contents=["x"], actor="alice")
    with pytest.raises(Conflict, match="is fulfilled"):
        order_fulfil_manually(order_no=delivered.order_no, contents=["again"], actor="alice")
    with pytest.raises(NotFound):
        order_fulfil_manually(order_no="nope", contents=["x"], actor="alice")
    assert OrderKey.objects.filter(order=delivered).count() == 1


@pytest.mark.parametrize("contents,message", [
    ([], "at least one line"),
    (["ok", "  "], "line 2: empty"),
    ("done", "a list of texts"),
    (["x" * 1025], "longer than 1024"),
])
def test_bad_contents_are_refused_naming_the_line(topup, contents, message):
    order = paid(manual_order(topup)[0])
    with pytest.raises(BadInput, match=message):
        order_fulfil_manually(order_no=order.order_no, contents=contents, actor="alice")
    assert Order.objects.get(pk=order.pk).status == "awaiting_manual"


def test_the_staff_queue_lists_waiting_orders_oldest_paid_first(topup, make_product):
    # given a manual order paid first, an awaiting-stock order paid second, and a fulfilled one
    enable_sandbox()
    first = paid(manual_order(topup, email="a@example.com")[0])
    keyed = make_product()
    add_keys(keyed, ["ONLY"])
    second, third = make_orders(keyed, [1, 1])
    paid(third)
    Key.objects.filter(product=keyed).update(status="void")
    paid(second)
    # when / then
    assert [o.order_no for o in orders_awaiting_staff()] == [first.order_no, second.order_no]


def test_a_refunded_manual_order_leaves_the_staff_queue_and_cannot_be_fulfilled_after(topup):
    # given a paid manual order waiting for staff
    order = paid(manual_order(topup)[0])
    assert order in orders_awaiting_staff()
    # when it is refunded instead of delivered
    order_refund(order_no=order.order_no, reason="could not top up", actor="alice")
    # then it is refunded, off the queue, and a late delivery by hand is refused, nothing sold
    order.refresh_from_db()
    assert order.status == "refunded" and order not in orders_awaiting_staff()
    with pytest.raises(Conflict, match="is refunded"):
        order_fulfil_manually(order_no=order.order_no, contents=["done"], actor="bob")
    assert not OrderKey.objects.filter(order=order).exists()
