"""Fulfilment by hand: staff enter what they delivered for an order no key stock can serve — a
`manual` product (a top-up done by a person) or an order awaiting stock.

What staff enter is sealed exactly like a key (stock.vault.key_seal) and stored as sold Key
rows linked through OrderKey, so the order page, the .txt download and the key email show it
with the machinery every other order uses. One short transaction, the order locked first: a
second call for the same order waits for the first, then finds it fulfilled (Conflict).
"""
from __future__ import annotations

from django.db import IntegrityError, transaction

from kami.audit.services import audit_record
from kami.catalog.models import Product
from kami.core import clock
from kami.core.crypto import keyring, normalise_key
from kami.core.errors import BadInput, Conflict, NotFound
from kami.delivery.services import order_keys_enqueue
from kami.orders.locks import orders_for_update
from kami.orders.models import Order, OrderKey
from kami.orders.services import order_event
from kami.stock.importer import MAX_CHARS
from kami.stock.models import Key
from kami.stock.vault import key_seal

BY_HAND = (Order.Status.AWAITING_MANUAL, Order.Status.AWAITING_STOCK)
MAX_LINES = 1000


def _lines(contents: object) -> list[str]:
    if not isinstance(contents, (list, tuple)) or not all(isinstance(c, str) for c in contents):
        raise BadInput("contents: expected a list of texts, one per unit delivered")
    if len(contents) > MAX_LINES:
        raise BadInput(f"contents: at most {MAX_LINES} lines per order")
    for i, text in enumerate(contents, start=1):
        if not normalise_key(text):
            raise BadInput(f"line {i}: empty; enter what you delivered, or remove the line")
        if len(normalise_key(text)) > MAX_CHARS:
            raise BadInput(f"line {i}: longer than {MAX_CHARS} characters")
    return list(contents)


def _sealed(order: Order, lines: list[str]) -> list[Key]:
    """Key rows for `lines`. For a key product the fingerprint is the product's usual one, so a
    key already in stock or sold is refused (invariant 1); for a `manual` product it is scoped
    to the order and line, so the same text ("done") may be delivered to many orders. A `dynamic`
    product's keys are keys (kami/fulfilment/mint): the product's usual fingerprint."""
    now, rows, keyed = clock.now(), [], order.product.kind != Product.Kind.MANUAL
    for i, text in enumerate(lines):
        fingerprint = "" if keyed else keyring().fingerprint(
            normalise_key(text), scope=f"manual:{order.order_no}:{i}")
        key_id, blob, fingerprint = key_seal(text, product_id=order.product_id, fingerprint=fingerprint)
        rows.append(Key(product_id=order.product_id, key_id=key_id, ciphertext=blob, fingerprint=fingerprint,
                        status=Key.Status.SOLD, sold_at=now))
    if keyed:
        fingerprints = [row.fingerprint for row in rows]
        repeated = [i for i, fp in enumerate(fingerprints, start=1) if fp in fingerprints[:i - 1]]
        taken = set(Key.objects.filter(product_id=order.product_id, fingerprint__in=fingerprints)
                    .values_list("fingerprint", flat=True))
        clash = sorted(set(repeated) | {i for i, fp in enumerate(fingerprints, start=1) if fp in taken})
        if clash:
            raise BadInput(f"line {', '.join(map(str, clash))}: this key is already in {order.product.slug}'s stock, "
                           "sold, or entered twice; a key is sold once — enter another")
    return rows


def _check(order: Order | None, order_no: str, lines: list[str]) -> Order:
    if order is None:
        raise NotFound(f"no order {order_no!r}")
    if order.status not in BY_HAND:
        raise Conflict(f"order {order.order_no} is {order.status}: only orders awaiting stock or manual delivery "
                       "can be fulfilled by hand")
    if order.status == Order.Status.AWAITING_STOCK and len(lines) != order.quantity:
        raise BadInput(f"order {order.order_no} needs exactly {order.quantity} keys, one per line; got {len(lines)}")
    if not lines:
        raise BadInput("contents: enter at least one line: what you delivered (a receipt, a code, 'done')")
    return order


def order_fulfil_manually(*, order_no: str, contents: list[str], actor: str, ip: str = "") -> Order:
    """Fulfil an `awaiting_manual` or `awaiting_stock` order with `contents` (one text per unit:
    exactly `quantity` of them for awaiting stock, one or more for a manual product); queue the
    key email and write the audit log. Conflict if the order is not (or no longer) waiting."""
    lines = _lines(contents)
    order = _check(Order.objects.select_related("product").filter(order_no=order_no).first(), order_no, lines)
    rows = _sealed(order, lines)  # crypto outside the transaction
    try:
        with transaction.atomic():  # lock the order first: a second call waits here, then sees it fulfilled
            order = _check(orders_for_update().filter(pk=order.pk).first(),
                           order_no, lines)
            keys = Key.objects.bulk_create(rows)
            if any(k.pk is None for k in keys):  # engines without RETURNING on bulk insert
                saved = Key.objects.filter(product_id=order.product_id, fingerprint__in=[r.fingerprint for r in rows])
                by_fingerprint = {k.fingerprint: k for k in saved}
                keys = [by_fingerprint[r.fingerprint] for r in rows]
            OrderKey.objects.bulk_create([OrderKey(order=order, key_id=k.pk, exclusive_key_id=k.pk, position=i)
                                          for i, k in enumerate(keys)])
            was = order.status
            order.status, order.fulfilled_at = Order.Status.FULFILLED, clock.now()
            order.save(update_fields=["status", "fulfilled_at"])
            order_event(order=order, kind="fulfilled_manually", keys=len(keys), was=was, actor=actor)
            order_keys_enqueue(order_id=order.pk, email=order.email)
            audit_record(actor=actor, action="order_fulfil_manually", obj_type="order", obj_id=order.order_no, ip=ip,
                         keys=[k.pk for k in keys], was=was)
    except IntegrityError:
        # The same key was imported or entered elsewhere between the check above and the insert.
        raise Conflict(f"order {order_no}: a key you entered was just added to {order.product.slug}'s stock; "
                       "enter another") from None
    return order
