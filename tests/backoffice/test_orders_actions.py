"""The after-sales actions on an order's page: each is a POST allowed to the roles holding its
capability, calls one service, and shows that service's message — success or refusal."""
from __future__ import annotations

from decimal import Decimal

import pytest
from django.test import Client

from kami.audit.models import AuditLog
from kami.delivery.models import OutboxMessage
from kami.orders.models import Order, OrderKey
from kami.orders.services import order_create
from kami.stock.models import Key
from tests.backoffice.staffing import admin_url
from tests.backoffice.test_orders_pages import FIELDS, PLAIN, detail_url, paid_order, pay, shop, signed_in
from tests.factories import add_keys, make_orders
from tests.sandbox_play import sandbox_notify

pytestmark = pytest.mark.django_db

# action: may (owner, operator, support) take it?
MATRIX = {
    "resend": (True, True, True),
    "fulfil": (True, True, False),
    "replace": (True, True, False),
    "refund": (True, True, False),
    "flag": (True, True, False),
    "unflag": (True, True, False),
}


def act(client, order, action, data=None, follow=True):
    return client.post(admin_url(f"orders/act/{order.pk}/{action}/"), data or {}, follow=follow)


def said(response) -> list[str]:
    return [str(m) for m in response.context["messages"]]


def refresh(order) -> Order:
    return Order.objects.get(pk=order.pk)


@pytest.mark.parametrize("action", sorted(MATRIX))
def test_each_action_is_allowed_to_the_roles_holding_its_capability(make_product, action):
    order = paid_order(shop(make_product))
    for role, allowed in zip(("owner", "operator", "support"), MATRIX[action]):
        client = signed_in(role, f"{role}-{action}")
        # allowed: a bare POST reaches the service and comes back to the order (the services
        # refuse it for want of a reason or a key); a refund POST without `confirm` only asks
        answered = 200 if action == "refund" else 302
        assert act(client, order, action, follow=False).status_code == (answered if allowed else 403), role
        assert client.get(admin_url(f"orders/act/{order.pk}/{action}/")).status_code == (405 if allowed else 403)
    assert refresh(order).status == "fulfilled"


def test_an_action_on_an_unknown_order_is_404():
    assert act(signed_in("owner"), Order(pk=999999), "resend", follow=False).status_code == 404


# ---- resend --------------------------------------------------------------------------------------

def test_support_resends_the_keys(make_product):
    order = paid_order(shop(make_product))
    response = act(signed_in("support"), order, "resend")
    row = OutboxMessage.objects.get(dedupe_key=f"order_keys:{order.pk}:resend:1")
    assert said(response) == [f"The keys are queued to b***@example.com again (delivery #{row.pk})."]
    assert f"delivery #{row.pk} order_keys: pending" in response.content.decode()
    assert AuditLog.objects.get(action="order.resend_delivery").actor == "support-user"


def test_resend_of_an_unpaid_order_is_refused_with_the_reason(make_product):
    (order,) = make_orders(shop(make_product), [1])
    response = act(signed_in("support"), order, "resend")
    assert said(response) == [f"order {order.order_no} is pending, not fulfilled: it has no keys to resend "
                              "(it is not paid)"]
    assert not OutboxMessage.objects.filter(dedupe_key__startswith=f"order_keys:{order.pk}:resend").exists()


# ---- fulfil by hand ------------------------------------------------------------------------------

def short_order(make_product):
    product = shop(make_product, keys=PLAIN[:1])
    (order,) = make_orders(product, [1])
    paid_order(product)  # takes the only key first
    return pay(order)


def test_an_order_awaiting_stock_is_fulfilled_by_hand(make_product):
    order = short_order(make_product)
    assert order.status == "awaiting_stock"
    response = act(signed_in("operator"), order, "fulfil", {"contents": "HAND-KEY-0001\n\n"})
    assert said(response) == [f"Order {order.order_no} fulfilled by hand with 1 line(s); the buyer is emailed."]
    assert refresh(order).status == "fulfilled"
    assert "HAND-KEY-0001" not in response.content.decode()
    assert "fulfilled_manually" in response.content.decode()


def test_a_manual_order_is_fulfilled_with_several_lines(make_product):
    shop(make_product)
    topup = make_product("topup", name="Phone top-up", kind="manual", price=Decimal("50.00"), custom_fields=FIELDS)
    order, _ = order_create(product=topup, quantity=1, email="m@example.com", gateway="sandbox",
                            custom_values={"phone": "13800000000"})
    sandbox_notify(Client(), order_no=order.order_no, amount=str(order.amount))
    assert refresh(order).status == "awaiting_manual"
    act(signed_in("owner"), order, "fulfil", {"contents": "receipt 881\nnote: done at 10:02"})
    assert refresh(order).status == "fulfilled" and OrderKey.objects.filter(order=order).count() == 2


def test_fulfil_with_the_wrong_number_of_lines_is_refused(make_product):
    order = short_order(make_product)
    response = act(signed_in("operator"), order, "fulfil", {"contents": "A-1\nA-2"})
    assert said(response) == [f"order {order.order_no} needs exactly 1 keys, one per line; got 2"]
    assert refresh(order).status == "awaiting_stock"


# ---- replace a key -------------------------------------------------------------------------------

def test_a_key_is_replaced_and_the_new_fingerprint_shown(make_product):
    # given a fulfilled order and a spare key in stock
    order = paid_order(shop(make_product, keys=PLAIN[:2]))
    old = OrderKey.objects.get(order=order).key
    # when
    response = act(signed_in("operator"), order, "replace", {"key": str(old.pk), "reason": "buyer says invalid"})
    # then
    new = OrderKey.objects.get(order=order).key
    assert new.pk != old.pk and Key.objects.get(pk=old.pk).status == "void"
    assert said(response) == [f"Key #{old.pk} replaced by key #{new.pk} (fingerprint {new.fingerprint[:8]}); "
                              "the buyer is emailed."]
    page = response.content.decode()
    assert f'<code class="fingerprint">{new.fingerprint[:8]}</code>' in page
    assert "key_replaced" in page and "buyer says invalid" in page
    assert AuditLog.objects.filter(action="order.key_replace", actor="operator-user").exists()


def test_replace_without_stock_is_refused_and_changes_nothing(make_product):
    order = paid_order(shop(make_product, keys=PLAIN[:1]))
    old = OrderKey.objects.get(order=order).key
    response = act(signed_in("owner"), order, "replace", {"key": str(old.pk), "reason": "broken"})
    assert said(response) == [f"gift has no key in stock to replace key #{old.pk} of order {order.order_no}: "
                              "import keys, then replace it again (nothing was changed)"]
    assert OrderKey.objects.get(order=order).key_id == old.pk and Key.objects.get(pk=old.pk).status == "sold"


def test_replace_without_choosing_a_key_is_refused(make_product):
    order = paid_order(shop(make_product))
    response = act(signed_in("owner"), order, "replace", {"reason": "broken"})
    assert said(response) == ["Choose the key to replace."]


# ---- refund --------------------------------------------------------------------------------------

def test_refund_asks_first_then_refunds_through_the_sandbox(make_product):
    order = paid_order(shop(make_product), quantity=2)
    client = signed_in("operator")
    # when the operator asks for the refund
    ask = act(client, order, "refund", {"reason": "changed mind"}, follow=False)
    # then they are asked to confirm, and nothing happened yet
    assert ask.status_code == 200 and 'name="confirm"' in ask.content.decode()
    assert "changed mind" in ask.content.decode() and refresh(order).status == "fulfilled"
    assert "Its 2 key(s) are voided for good" in ask.content.decode()
    # when they confirm
    done = act(client, order, "refund", {"reason": "changed mind", "confirm": "yes"})
    # then
    assert said(done) == [f"Order {order.order_no} is refunded through the gateway (reference SBX-R{order.order_no}) "
                          "and 2 key(s) voided."]
    assert refresh(order).status == "refunded"
    assert AuditLog.objects.get(action="order.refund").actor == "operator-user"


def test_refund_of_an_unpaid_order_is_refused(make_product):
    (order,) = make_orders(shop(make_product), [1])
    response = act(signed_in("owner"), order, "refund", {"reason": "x", "confirm": "yes"})
    assert said(response) == [f"order {order.order_no} is pending and was never paid: there is nothing to refund"]
    assert refresh(order).status == "pending"


# ---- flag and unflag -----------------------------------------------------------------------------

def test_an_order_is_flagged_and_unflagged(make_product):
    order = paid_order(shop(make_product))
    client = signed_in("operator")
    flagged = act(client, order, "flag", {"reason": "chargeback risk"})
    assert said(flagged) == [f"Order {order.order_no} is flagged for review."]
    assert refresh(order).status == "flagged" and "chargeback risk" in flagged.content.decode()
    assert 'id="form-unflag"' in flagged.content.decode()
    unflagged = act(client, order, "unflag")
    assert said(unflagged) == [f"Order {order.order_no} is unflagged: it is fulfilled again."]
    assert refresh(order).status == "fulfilled"


def test_flag_without_a_reason_is_refused(make_product):
    order = paid_order(shop(make_product))
    response = act(signed_in("owner"), order, "flag", {"reason": "  "})
    assert said(response) == ["reason: say why the order needs review (it is shown with the order)"]
    assert refresh(order).status == "fulfilled"


def test_unflag_of_an_order_the_payment_check_flagged_is_refused(make_product):
    # given an order paid with the wrong amount: flagged by the payment check, no keys
    (order,) = make_orders(shop(make_product), [1])
    sandbox_notify(Client(), order_no=order.order_no, amount="0.01")
    assert refresh(order).status == "flagged"
    response = act(signed_in("owner"), order, "unflag")
    assert said(response)[0].startswith(f"order {order.order_no} was flagged by the payment check")
    assert refresh(order).status == "flagged"


def test_the_page_offers_only_the_actions_the_role_and_status_allow(make_product):
    order = paid_order(shop(make_product))
    owner = signed_in("owner").get(detail_url(order)).content.decode()
    for form in ("form-resend", "form-replace", "form-refund", "form-flag"):
        assert f'id="{form}"' in owner
    assert 'id="form-fulfil"' not in owner and 'id="form-unflag"' not in owner
    add_keys(order.product, ["SPARE-1"])
    short = short_order_of(order.product)
    page = signed_in("operator").get(detail_url(short)).content.decode()
    assert 'id="form-fulfil"' in page and 'id="form-resend"' not in page and 'id="form-replace"' not in page


def short_order_of(product):
    (order,) = make_orders(product, [2])
    Key.objects.filter(product=product, status="available").update(status="void", void_reason="test: none left")
    return pay(order)
