"""Refunds: the order becomes refunded, its keys are revoked and never sold again, the buyer is
emailed, the audit log says who did it; through the gateway's API where it has one, by hand
where it has not."""
from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.management import CommandError, call_command
from django.test import Client

from kami.audit.models import AuditLog
from kami.core import clock
from kami.delivery.models import OutboxMessage
from kami.fulfilment.backfill import sweep
from kami.fulfilment.refund import order_refund
from kami.orders.models import Order, OrderKey
from kami.stock.models import Key
from kami.stock.selectors import available_count
from tests.factories import add_keys, make_orders
from tests.payments.epay_play import enable_epay, notify, paid_params
from tests.sandbox_play import enable_sandbox, sandbox_notify

pytestmark = pytest.mark.django_db(transaction=True)


def paid_order(product, quantity=1):
    (order,) = make_orders(product, [quantity])
    assert sandbox_notify(Client(), order_no=order.order_no, amount=str(order.amount)).content == b"ok"
    order.refresh_from_db()
    return order


def test_refund_revokes_the_keys_and_tells_the_buyer(make_product, capsys):
    # given a fulfilled order of two keys
    enable_sandbox()
    product = make_product()
    add_keys(product, ["R-1", "R-2", "R-3"])
    order = paid_order(product, quantity=2)
    sold = list(OrderKey.objects.filter(order=order).values_list("key_id", flat=True))
    # when the merchant refunds it from the command line
    call_command("order", "refund", order.order_no, "--reason", "buyer changed their mind")
    # then
    order.refresh_from_db()
    assert order.status == "refunded"
    assert set(Key.objects.filter(id__in=sold).values_list("status", flat=True)) == {"void"}
    assert available_count(product_id=product.pk) == 1  # the refunded keys did not go back on sale
    assert OutboxMessage.objects.filter(kind="order_refunded", target=order.email).count() == 1
    audit = AuditLog.objects.get(action="order.refund")
    assert (audit.actor, audit.object_id, audit.detail["keys_voided"]) == ("cli", order.order_no, 2)
    assert "refunded through the gateway" in capsys.readouterr().out


def test_refunded_keys_are_never_sold_again(make_product):
    enable_sandbox()
    product = make_product()
    add_keys(product, ["ONCE-1"])
    first = paid_order(product)
    order_refund(order_no=first.order_no, actor="test")
    add_keys(product, ["ONCE-2"])
    second = paid_order(product)
    keys = OrderKey.objects.filter(order=second).values_list("key__status", "key_id")
    assert second.status == "fulfilled" and len(keys) == 1
    assert keys[0][1] not in OrderKey.objects.filter(order=first).values_list("key_id", flat=True)


def test_refund_twice_or_of_an_unpaid_order_is_refused(make_product):
    enable_sandbox()
    product = make_product()
    add_keys(product, ["T-1", "T-2"])
    paid = paid_order(product)
    (unpaid,) = make_orders(product, [1])
    order_refund(order_no=paid.order_no, actor="test")
    with pytest.raises(CommandError) as twice:
        call_command("order", "refund", paid.order_no)
    with pytest.raises(CommandError) as never:
        call_command("order", "refund", unpaid.order_no)
    assert twice.value.returncode == never.value.returncode == 2
    assert "already refunded" in str(twice.value) and "never paid" in str(never.value)
    assert OutboxMessage.objects.filter(kind="order_refunded").count() == 1


def test_a_gateway_without_refund_api_is_marked_for_manual_refund(make_product, client):
    # given an Epay order (Epay V1 has no refund API here)
    enable_epay()
    product = make_product()
    add_keys(product, ["EP-1"])
    created = client.post("/api/v1/orders", {"product": product.slug, "quantity": 1, "email": "b@example.com",
                                             "gateway": "epay"}, content_type="application/json").json()
    assert notify(client, paid_params(order_no=created["order_no"], money=created["amount"])).content == b"success"
    # when
    outcome = order_refund(order_no=created["order_no"], actor="test")
    # then
    assert outcome.manual and outcome.keys_voided == 1
    assert Order.objects.get(order_no=created["order_no"]).status == "refunded"


def test_orders_awaiting_stock_too_long_are_refunded_when_the_merchant_turns_it_on(make_product, settings):
    enable_sandbox()
    product = make_product()
    add_keys(product, ["GONE"])
    (order,) = make_orders(product, [1])
    Key.objects.update(status="void")
    sandbox_notify(Client(), order_no=order.order_no, amount=str(order.amount))
    assert sweep()["auto_refunded"] == 0  # off by default
    settings.KAMI_AUTO_REFUND_AFTER_HOURS = 48
    try:
        clock.travel(timedelta(hours=49))
        assert sweep()["auto_refunded"] == 1
    finally:
        clock.travel(None)
    assert Order.objects.get(pk=order.pk).status == "refunded"


def test_the_refund_email_reaches_the_buyer_in_their_language(make_product, mailoutbox):
    from kami.delivery.worker import run_once

    enable_sandbox()
    product = make_product()
    add_keys(product, ["MAIL-1"])
    order = paid_order(product)
    Order.objects.filter(pk=order.pk).update(locale="zh-hans")
    order_refund(order_no=order.order_no, reason="缺货", actor="test")
    run_once(worker_id="refund-test")
    refund_mail = [m for m in mailoutbox if "退款" in m.subject]
    assert len(refund_mail) == 1 and order.order_no in refund_mail[0].body and "缺货" in refund_mail[0].body
    assert "MAIL-1" not in refund_mail[0].body
