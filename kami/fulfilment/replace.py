"""Replacing a bad key on a fulfilled order (the buyer reports that it does not work).

One short transaction, locks in the global order (order → its OrderKey row → keys):

    lock the order → lock the OrderKey row holding the key → claim one new key (SKIP LOCKED,
    kami.stock.claim, the same claim as a sale) → void the old key for good → relink the row to
    the new key in the same position → order event, buyer email (outbox), audit row

No key in stock: `SoldOut`, and nothing changed. Two people replacing the same key at once
queue on the order lock; the second finds the key no longer on the order and is told so.
"""
from __future__ import annotations

from django.db import transaction

from kami.audit.services import audit_record
from kami.catalog.models import Product
from kami.core.errors import BadInput, Conflict, NotFound, SoldOut
from kami.delivery.services import outbox_enqueue
from kami.fulfilment.confirm import low_stock_check
from kami.orders.locks import orders_for_update
from kami.orders.models import Order, OrderKey
from kami.orders.services import order_event
from kami.stock.claim import ShortClaim, keys_claim
from kami.stock.models import Key


def order_key_replace(*, order_no: str, key_pk: int, reason: str, actor: str, ip: str = "") -> Key:
    """Swap key `key_pk` of fulfilled order `order_no` for a new one from stock; return the new
    key. The old key is voided (never sold again) with the reason; the buyer is emailed."""
    reason = " ".join((reason or "").split())[:150]
    if not reason:
        raise BadInput("reason: say what is wrong with the key (the buyer's report); it is kept with the voided key")
    try:
        return _replace(order_no, key_pk, reason, actor, ip, wait=False)
    except ShortClaim:
        # SKIP LOCKED came up short while locked keys may come free: everything was rolled
        # back; claim again waiting on locks before answering "sold out" (docs/concurrency.md).
        return _replace(order_no, key_pk, reason, actor, ip, wait=True)


def _replace(order_no: str, key_pk: int, reason: str, actor: str, ip: str, *, wait: bool) -> Key:
    with transaction.atomic():  # the old key voided and the new one linked together, or nothing at all
        order = orders_for_update().filter(order_no=order_no).first()
        if order is None:
            raise NotFound(f"no order {order_no!r}")
        _check_replaceable(order)
        link = OrderKey.objects.select_for_update().filter(order=order, key_id=key_pk).first()
        if link is None:
            raise Conflict(_not_on_order(order, key_pk))
        ids = keys_claim(product=order.product, quantity=1, wait=wait)
        if ids is None:
            raise SoldOut(f"{order.product.slug} has no key in stock to replace key #{key_pk} of order {order_no}: "
                          "import keys, then replace it again (nothing was changed)")
        old, new = Key.objects.get(pk=key_pk), Key.objects.get(pk=ids[0])
        if not Key.objects.filter(pk=old.pk, status=Key.Status.SOLD).update(
                status=Key.Status.VOID, void_reason=f"replaced on order {order_no}: {reason}"[:200]):
            raise Conflict(f"key #{old.pk} of order {order_no} is {old.status}, not sold: it cannot be replaced")
        link.key, link.exclusive_key = new, new
        link.save(update_fields=["key", "exclusive_key"])
        _record(order, old, new, link.position, reason, actor, ip)
        low_stock_check(order.product)
    return new


def _check_replaceable(order: Order) -> None:
    if order.status != Order.Status.FULFILLED:
        raise Conflict(f"order {order.order_no} is {order.status}: only the keys of a fulfilled order can be replaced")
    if order.product.kind != Product.Kind.UNIQUE:
        raise BadInput(f"order {order.order_no} is for {order.product.slug}, a {order.product.kind} product: only "
                       "unique keys are replaced one by one (void a shared key and add a new one instead)")


def _not_on_order(order: Order, key_pk: int) -> str:
    replaced = order.events.filter(kind="key_replaced", detail__old_key=key_pk).order_by("-id").first()
    if replaced is not None:
        return (f"key #{key_pk} of order {order.order_no} was already replaced by key "
                f"#{replaced.detail.get('new_key')}")
    return f"key #{key_pk} is not on order {order.order_no}"


def _record(order: Order, old: Key, new: Key, position: int, reason: str, actor: str, ip: str) -> None:
    """Event, buyer email and audit row: fingerprint prefixes only, never a key."""
    both = {"old_key": old.pk, "old_fingerprint": old.fingerprint[:8], "new_key": new.pk,
            "new_fingerprint": new.fingerprint[:8]}
    order_event(order=order, kind="key_replaced", position=position, reason=reason, actor=actor, **both)
    # One email per replacement: a key is replaced at most once (it is void afterwards).
    outbox_enqueue(kind="key_replaced", channel="email", target=order.email,
                   dedupe_key=f"key_replaced:{order.pk}:{old.pk}:email",
                   payload={"order_id": order.pk, "key_id": new.pk})
    audit_record(actor=actor, action="order.key_replace", obj_type="order", obj_id=order.order_no, ip=ip,
                 reason=reason, **both)
