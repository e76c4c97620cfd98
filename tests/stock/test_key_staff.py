"""key_reveal, key_restore and keys_list: what staff do with single keys, audited, no plaintext."""
from __future__ import annotations

import pytest
from django.test import Client

from kami.audit.models import AuditLog
from kami.core.errors import BadInput, Conflict, NotFound
from kami.fulfilment.backfill import restock_backfill
from kami.fulfilment.refund import order_refund
from kami.stock.models import Key
from kami.stock.selectors import keys_list
from kami.stock.services import key_restore, key_reveal, key_void
from kami.stock.vault import key_fingerprint
from tests.factories import add_keys, make_orders
from tests.sandbox_play import enable_sandbox, sandbox_notify
from tests.stock.helpers import awaiting_order

pytestmark = pytest.mark.django_db(transaction=True)


def test_reveal_returns_the_key_and_audits_only_a_fingerprint_prefix(make_product):
    # given
    product = make_product()
    (key,) = add_keys(product, ["SECRET-CODE-1"])
    # when
    secret = key_reveal(key_pk=key.pk, actor="alice", ip="10.0.0.7")
    # then
    assert secret.reveal() == "SECRET-CODE-1" and "SECRET" not in repr(secret)
    audit = AuditLog.objects.get(action="keys.reveal")
    assert (audit.actor, audit.ip, audit.object_id) == ("alice", "10.0.0.7", str(key.pk))
    assert audit.detail == {"product": product.slug, "fingerprint": key.fingerprint[:8], "status": "available"}
    assert "SECRET" not in str(audit.detail)
    with pytest.raises(NotFound, match=r"no key #999999"):
        key_reveal(key_pk=999999, actor="alice")


def test_restore_puts_a_voided_unsold_key_back_on_sale(make_product):
    # given
    product = make_product(low_stock=1)
    (key,) = add_keys(product, ["OOPS-1"])
    key_void(product=product, key_pk=key.pk, reason="voided by mistake", actor="alice")
    # when
    restored = key_restore(key_pk=key.pk, actor="alice", ip="10.0.0.8")
    # then
    assert (restored.status, restored.void_reason) == ("available", "")
    audit = AuditLog.objects.get(action="keys.restore")
    assert (audit.ip, audit.detail["was"], audit.detail["fingerprint"]) == ("10.0.0.8", "voided by mistake",
                                                                            key.fingerprint[:8])
    with pytest.raises(Conflict, match="is available, not void"):
        key_restore(key_pk=key.pk, actor="alice")


def test_a_refunded_key_is_never_restored(make_product):
    # given: a key sold, then voided by the refund of its order
    product = make_product()
    enable_sandbox()
    add_keys(product, ["SOLD-1"])
    (order,) = make_orders(product, [1])
    assert sandbox_notify(Client(), order_no=order.order_no, amount=str(order.amount)).content == b"ok"
    order_refund(order_no=order.order_no, reason="buyer asked", actor="alice")
    key = Key.objects.get(product=product)
    assert key.status == "void"
    # when / then
    with pytest.raises(Conflict, match=rf"went to order {order.order_no} \(refunded\): a key a buyer has seen is never"):
        key_restore(key_pk=key.pk, actor="alice")
    assert Key.objects.get(pk=key.pk).status == "void"


def test_keys_list_filters_and_never_carries_key_text(make_product):
    # given
    product = make_product()
    keys = add_keys(product, ["L-1", "L-2", "L-3", "L-4"])
    order = awaiting_order(product)
    restock_backfill(product_id=product.pk)  # sells L-1
    key_void(product=product, key_pk=keys[1].pk, actor="alice")
    # when
    everything = keys_list(product=product)
    sold = keys_list(product=product, status="sold")
    by_prefix = keys_list(product=product, fingerprint_prefix=key_fingerprint("L-3")[:6].upper())
    page = keys_list(product=product, limit=2, before=keys[3].pk)
    # then
    assert [r.id for r in everything] == [k.pk for k in reversed(keys)]
    assert [(r.id, r.status, r.order_nos) for r in sold] == [(keys[0].pk, "sold", (order.order_no,))]
    assert keys[2].pk in [r.id for r in by_prefix]
    assert [r.id for r in page] == [keys[2].pk, keys[1].pk]
    assert all(len(r.fingerprint) == 12 and not hasattr(r, "ciphertext") for r in everything)
    assert "L-1" not in repr(everything)
    with pytest.raises(BadInput, match="hex"):
        keys_list(product=product, fingerprint_prefix="xyz")
    with pytest.raises(BadInput, match="status 'gone'"):
        keys_list(product=product, status="gone")
