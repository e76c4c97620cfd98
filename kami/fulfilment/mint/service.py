"""The mint's database side: queue it at confirm, store its answer, and hand the order to a person
when the merchant's URL keeps failing.

A repeated call never yields two keys for one item: the answer is stored only by the transaction
that finds the order still waiting, under the order's row lock; any later answer (a second worker
after a lease ran out, a redelivery by staff, a duplicate) finds it fulfilled and stores nothing.
The keys are sealed like imported ones and carry the product's usual fingerprint, so a key the
URL already gave another order is refused by `key_unique_per_product` (invariant 1)."""
from __future__ import annotations

import logging
from dataclasses import dataclass

from django.db import IntegrityError, transaction

from kami.catalog.models import Product
from kami.core import clock
from kami.delivery.channels.webhook import webhook_host
from kami.delivery.models import OutboxMessage
from kami.delivery.services import admin_alert, order_keys_enqueue, outbox_enqueue
from kami.orders.locks import orders_for_update
from kami.orders.models import Order, OrderKey
from kami.orders.services import order_event
from kami.stock.models import Key
from kami.stock.vault import key_seal

log = logging.getLogger("kami.fulfilment.mint")
KIND, CHANNEL = "mint_keys", "mint"
WAITING = Order.Status.AWAITING_STOCK  # a minting order waits as one awaiting stock (docs/api.md says why)


class KeyTaken(Exception):
    """A minted key is already in the product's stock or sold: the URL must mint a new one."""


@dataclass(frozen=True)
class MintJob:
    order: Order
    product: Product

    @property
    def set_aside(self) -> bool:
        """Flagged for review while waiting for its keys: not minted until a person decides."""
        return self.order.status == Order.Status.FLAGGED


def mint_queue(order: Order) -> OutboxMessage | None:
    """In the confirm transaction (the order locked, `paid_at` set): the paid order of a dynamic
    product waits, and its mint goes to the outbox, performed after commit by the worker."""
    order.status = WAITING
    order.save(update_fields=["status", "paid_at"])
    order_event(order=order, kind="awaiting_mint", quantity=order.quantity)
    return outbox_enqueue(kind=KIND, channel=CHANNEL, target=webhook_host(order.product.mint_url)[:254],
                          dedupe_key=f"{KIND}:{order.pk}", payload={"order_id": order.pk})


def mint_job(*, order_id: int) -> MintJob | None:
    """What to mint for `order_id`, or None when nothing is left to do (fulfilled by an earlier
    answer or by hand, refunded): then the merchant is not called at all. A waiting order that
    staff flagged is returned too (`set_aside`): its mint waits until it is unflagged or refunded."""
    order = Order.objects.select_related("product").filter(pk=order_id).first()
    if order is None or order.status not in (WAITING, Order.Status.FLAGGED):
        return None
    if order.status == Order.Status.FLAGGED and OrderKey.objects.filter(order_id=order.pk).exists():
        return None  # flagged after it got its keys: nothing to mint
    return MintJob(order=order, product=order.product)


def mint_store(*, order_id: int, keys: list[str]) -> bool:
    """Store the minted `keys` (normalised, one per item, in item order) for the order and fulfil
    it, in one transaction. False: the order was no longer waiting, nothing stored. Raises
    KeyTaken when a key is already in the product (nothing stored: the call is retried)."""
    order = Order.objects.select_related("product").get(pk=order_id)
    now = clock.now()
    rows = []
    for text in keys:  # crypto outside the transaction
        key_id, blob, fingerprint = key_seal(text, product_id=order.product_id)
        rows.append(Key(product_id=order.product_id, key_id=key_id, ciphertext=blob, fingerprint=fingerprint,
                        status=Key.Status.SOLD, sold_at=now))
    try:
        with transaction.atomic():  # lock the order first: a second answer waits here, then finds it fulfilled
            return _fulfil(orders_for_update().filter(pk=order_id, status=WAITING).first(), rows)
    except IntegrityError:
        raise KeyTaken(f"order {order.order_no}: a minted key is already in {order.product.slug}'s stock or sold; "
                       "the mint URL must mint a new key per idempotency key") from None


def _fulfil(order: Order | None, rows: list[Key]) -> bool:
    if order is None:
        return False
    stored = Key.objects.bulk_create(rows)
    if any(k.pk is None for k in stored):  # engines without RETURNING on bulk insert
        by_fingerprint = {k.fingerprint: k for k in Key.objects.filter(
            product_id=order.product_id, fingerprint__in=[r.fingerprint for r in rows])}
        stored = [by_fingerprint[r.fingerprint] for r in rows]
    OrderKey.objects.bulk_create([OrderKey(order=order, key_id=k.pk, exclusive_key_id=k.pk, position=i)
                                  for i, k in enumerate(stored)])
    order.status, order.fulfilled_at = Order.Status.FULFILLED, clock.now()
    order.save(update_fields=["status", "fulfilled_at"])
    order_event(order=order, kind="fulfilled", keys=len(stored), minted=True)
    order_keys_enqueue(order_id=order.pk, email=order.email)
    return True


def on_mint_exhausted(message: OutboxMessage, error: str) -> None:
    """The mint ran out of attempts (or cannot work: no URL): the order keeps waiting, paid and
    recorded, and the merchant is alerted to retry it, deliver by hand or refund. Registered with
    kami.delivery for kind `mint_keys`; runs in the worker's recording transaction."""
    order = Order.objects.select_related("product").filter(pk=(message.payload or {}).get("order_id")).first()
    if order is None:
        return
    if order.status == WAITING:
        order_event(order=order, kind="mint_failed", attempts=message.attempts, error=error)
    admin_alert(event="delivery_manual", dedupe_key=str(message.id), text="delivery_manual.mint_keys",
                params={"message_id": message.id, "kind": message.kind, "channel": message.channel,
                        "target": message.target, "attempts": message.attempts, "error": error,
                        "order_no": order.order_no, "product": order.product.slug, "quantity": order.quantity})
