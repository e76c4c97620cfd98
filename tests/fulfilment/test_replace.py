"""Replacing a bad key: the old one voided for good, one new key from stock in the same place,
both recorded, the buyer emailed in their language; no stock → nothing changes."""
from __future__ import annotations

import pytest
from django.test import Client

from kami.audit.models import AuditLog
from kami.core.errors import BadInput, Conflict, NotFound, SoldOut
from kami.delivery.models import OutboxMessage
from kami.delivery.worker import run_pass
from kami.fulfilment.replace import order_key_replace
from kami.orders.models import Order, OrderEvent, OrderKey
from kami.orders.selectors import order_keys_plaintext
from kami.stock.models import Key
from kami.stock.services import key_restore
from tests.delivery.conftest import smtp  # noqa: F401 — the real SMTP server fixture
from tests.factories import add_keys, make_orders
from tests.sandbox_play import enable_sandbox, sandbox_notify

pytestmark = pytest.mark.django_db(transaction=True)


def fulfilled(product, quantity=1, locale="zh-hans") -> Order:
    enable_sandbox()
    (order,) = make_orders(product, [quantity])
    Order.objects.filter(pk=order.pk).update(locale=locale)
    assert sandbox_notify(Client(), order_no=order.order_no, amount=str(order.amount)).content == b"ok"
    order.refresh_from_db()
    assert order.status == "fulfilled"
    return order


def keys_of(order) -> list[int]:
    return list(OrderKey.objects.filter(order=order).order_by("position").values_list("key_id", flat=True))


def test_replace_swaps_one_key_in_place_and_records_both(make_product):
    # given: an order of two keys, and one more key in stock
    product = make_product(max_qty=5)
    add_keys(product, ["GOOD-1", "BAD-2", "SPARE-3"])
    order = fulfilled(product, quantity=2)
    first, bad = keys_of(order)
    # when
    new = order_key_replace(order_no=order.order_no, key_pk=bad, reason="buyer: code already used",
                            actor="alice", ip="10.0.0.3")
    # then: same position, the old key void with the reason, the new one sold
    assert keys_of(order) == [first, new.pk]
    assert [k.reveal() for k in order_keys_plaintext(order=order)] == ["GOOD-1", "SPARE-3"]
    old = Key.objects.get(pk=bad)
    assert (old.status, old.void_reason) == ("void", f"replaced on order {order.order_no}: buyer: code already used")
    assert Key.objects.get(pk=new.pk).status == "sold"
    event = OrderEvent.objects.get(order=order, kind="key_replaced")
    assert event.detail == {"position": 1, "reason": "buyer: code already used", "actor": "alice", "old_key": bad,
                            "old_fingerprint": old.fingerprint[:8], "new_key": new.pk,
                            "new_fingerprint": new.fingerprint[:8]}
    audit = AuditLog.objects.get(action="order.key_replace")
    assert (audit.actor, audit.ip, audit.object_id, audit.detail["new_key"]) == ("alice", "10.0.0.3", order.order_no,
                                                                                new.pk)
    assert "BAD-2" not in str(event.detail) + str(audit.detail)
    assert OutboxMessage.objects.filter(kind="key_replaced", target=order.email).count() == 1
    # and a replaced key never goes back on sale
    with pytest.raises(Conflict, match="never sold again"):
        key_restore(key_pk=bad, actor="alice")


@pytest.mark.parametrize(("locale", "subject", "line"), [
    ("zh-hans", "卡密已更换", "您的新卡密："),
    ("en", "was replaced", "Your new key:"),
])
def test_the_buyer_is_emailed_the_new_key_in_their_language(make_product, smtp, locale, subject, line):  # noqa: F811
    # given
    product = make_product()
    add_keys(product, ["BROKEN-1", "FRESH-2"])
    order = fulfilled(product, locale=locale)
    # when
    order_key_replace(order_no=order.order_no, key_pk=keys_of(order)[0], reason="does not work", actor="alice")
    run_pass(worker_id="test")
    # then
    mails = [m for m in smtp.to(order.email) if subject in str(m["Subject"])]
    assert len(mails) == 1
    text = mails[0].get_body(preferencelist=("plain",)).get_content()
    assert line in text and "FRESH-2" in text and "BROKEN-1" not in text
    assert "FRESH-2" in mails[0].get_body(preferencelist=("html",)).get_content()


def test_no_stock_is_sold_out_and_changes_nothing(make_product):
    # given: a fulfilled order and no key left
    product = make_product()
    add_keys(product, ["ONLY-1"])
    order = fulfilled(product)
    (key,) = keys_of(order)
    # when
    with pytest.raises(SoldOut, match=rf"{product.slug} has no key in stock to replace key #{key}.*nothing was changed"):
        order_key_replace(order_no=order.order_no, key_pk=key, reason="broken", actor="alice")
    # then
    assert keys_of(order) == [key] and Key.objects.get(pk=key).status == "sold"
    assert not OrderEvent.objects.filter(kind="key_replaced").exists()
    assert not OutboxMessage.objects.filter(kind="key_replaced").exists()
    assert not AuditLog.objects.filter(action="order.key_replace").exists()


def test_refusals_name_the_problem(make_product):
    product = make_product()
    add_keys(product, ["R-1", "R-2", "R-3"])
    order = fulfilled(product)
    (key,) = keys_of(order)
    with pytest.raises(BadInput, match="reason"):
        order_key_replace(order_no=order.order_no, key_pk=key, reason="  ", actor="alice")
    with pytest.raises(NotFound, match="no order 'NOPE'"):
        order_key_replace(order_no="NOPE", key_pk=key, reason="x", actor="alice")
    new = order_key_replace(order_no=order.order_no, key_pk=key, reason="x", actor="alice")
    with pytest.raises(Conflict, match=rf"key #{key} of order {order.order_no} was already replaced by key #{new.pk}"):
        order_key_replace(order_no=order.order_no, key_pk=key, reason="x", actor="bob")
    with pytest.raises(Conflict, match=f"key #999999 is not on order {order.order_no}"):
        order_key_replace(order_no=order.order_no, key_pk=999999, reason="x", actor="alice")
    Order.objects.filter(pk=order.pk).update(status="refunded")
    with pytest.raises(Conflict, match="is refunded: only the keys of a fulfilled order"):
        order_key_replace(order_no=order.order_no, key_pk=new.pk, reason="x", actor="alice")


def test_a_reusable_products_shared_key_is_not_replaced_one_order_at_a_time(make_product):
    product = make_product(kind="reusable")
    add_keys(product, ["SHARED-1"])
    order = fulfilled(product)
    with pytest.raises(BadInput, match="a reusable product"):
        order_key_replace(order_no=order.order_no, key_pk=keys_of(order)[0], reason="x", actor="alice")
