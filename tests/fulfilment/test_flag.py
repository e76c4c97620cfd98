"""Flag and unflag: the status before the flag is kept in the event and comes back; idempotent."""
from __future__ import annotations

import pytest
from django.test import Client

from kami.audit.models import AuditLog
from kami.core.errors import BadInput, Conflict, NotFound
from kami.fulfilment.backfill import restock_backfill
from kami.fulfilment.flag import order_flag, order_unflag
from kami.orders.models import Order, OrderEvent
from tests.factories import add_keys, make_orders
from tests.sandbox_play import enable_sandbox, sandbox_notify
from tests.stock.helpers import awaiting_order

pytestmark = pytest.mark.django_db(transaction=True)


def test_flag_then_unflag_returns_to_the_previous_status(make_product):
    # given a fulfilled order
    enable_sandbox()
    product = make_product()
    add_keys(product, ["F-1"])
    (order,) = make_orders(product, [1])
    sandbox_notify(Client(), order_no=order.order_no, amount=str(order.amount))
    # when
    flagged = order_flag(order_no=order.order_no, reason="chargeback  reported", actor="alice", ip="10.0.0.1")
    again = order_flag(order_no=order.order_no, reason="other", actor="bob")
    # then
    assert (flagged.status, flagged.flag_reason) == ("flagged", "chargeback reported")
    assert (again.status, again.flag_reason) == ("flagged", "chargeback reported")  # idempotent: nothing changed
    event = OrderEvent.objects.get(order=order, kind="flagged")
    assert event.detail == {"reason": "staff", "detail": "chargeback reported", "previous": "fulfilled", "actor": "alice"}
    # when
    unflagged = order_unflag(order_no=order.order_no, actor="carol", ip="10.0.0.2")
    # then
    assert (unflagged.status, unflagged.flag_reason) == ("fulfilled", "")
    assert order_unflag(order_no=order.order_no, actor="carol").status == "fulfilled"  # idempotent
    assert OrderEvent.objects.get(order=order, kind="unflagged").detail == {"status": "fulfilled", "actor": "carol"}
    audits = list(AuditLog.objects.filter(action__startswith="order.").order_by("id").values_list("action", "actor", "ip"))
    assert audits == [("order.flag", "alice", "10.0.0.1"), ("order.unflag", "carol", "10.0.0.2")]


def test_an_awaiting_order_is_set_aside_and_backfilled_when_unflagged(make_product):
    # given: an order awaiting stock is flagged, then keys arrive
    product = make_product()
    order = awaiting_order(product)
    order_flag(order_no=order.order_no, reason="suspicious buyer", actor="alice")
    add_keys(product, ["LATE-1"])
    assert restock_backfill(product_id=product.pk) == 0  # a flagged order is not fulfilled
    # when
    unflagged = order_unflag(order_no=order.order_no, actor="alice")
    # then
    assert unflagged.status == "fulfilled"


def test_what_cannot_be_flagged_or_unflagged_is_refused_clearly(make_product):
    product = make_product()
    add_keys(product, ["P-1"])
    (pending,) = make_orders(product, [1])
    with pytest.raises(Conflict, match="is pending: only a paid order can be flagged"):
        order_flag(order_no=pending.order_no, reason="x", actor="alice")
    with pytest.raises(BadInput, match="reason"):
        order_flag(order_no=pending.order_no, reason=" ", actor="alice")
    with pytest.raises(NotFound):
        order_unflag(order_no="NOPE", actor="alice")
    # an order flagged by the payment check had no status worth going back to
    Order.objects.filter(pk=pending.pk).update(status="flagged", flag_reason="amount_mismatch")
    OrderEvent.objects.create(order=pending, at=pending.created_at, kind="flagged",
                              detail={"reason": "amount_mismatch", "detail": "paid 1.00 CNY, expected 29.90 CNY"})
    with pytest.raises(Conflict, match=r"flagged by the payment check \(amount_mismatch\).*refund it"):
        order_unflag(order_no=pending.order_no, actor="alice")
