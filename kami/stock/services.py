"""Stock services: import, generate, export, reveal, void and restore keys. Every one writes an
audit row (a fingerprint prefix, never the key).

Import, generation and export live in `importer`, `generator` (they share the batch path) and
`export`; they are re-exported here so callers need one module.
"""
from __future__ import annotations

from django.db import transaction

from kami.audit.services import audit_record
from kami.catalog.models import Product
from kami.core.crypto import Secret
from kami.core.errors import BadInput, Conflict, NotFound
from kami.stock.export import _ORDER_NO, EXPORT_FORMATS, EXPORT_STATUSES, csv_cells, keys_export, keys_export_chunks
from kami.stock.generator import keys_generate
from kami.stock.importer import keys_import, low_stock_rearm
from kami.stock.models import Key
from kami.stock.report import ImportReport
from kami.stock.vault import key_open, key_seal

__all__ = ["EXPORT_FORMATS", "EXPORT_STATUSES", "ImportReport", "csv_cells", "key_restore", "key_reveal", "key_void",
           "keys_export", "keys_export_chunks", "keys_generate", "keys_import", "keys_reseal", "low_stock_rearm"]

MIN_PREFIX = 6


def key_void(*, product: Product, fingerprint_prefix: str = "", key_pk: int | None = None, reason: str = "",
             actor: str, ip: str = "") -> Key:
    """Take one available key off sale for good. A sold key stays sold: the buyer has it, so
    voiding would only hide that fact; refund or replace the order instead."""
    key = _key_find(product=product, fingerprint_prefix=fingerprint_prefix, key_pk=key_pk)
    changed = Key.objects.filter(pk=key.pk, status=Key.Status.AVAILABLE).update(
        status=Key.Status.VOID, void_reason=reason[:200])
    if not changed:
        key.refresh_from_db()
        raise Conflict(_not_voidable(key))
    key.refresh_from_db()
    audit_record(actor=actor, action="keys.void", obj_type="key", obj_id=key.pk, ip=ip,
                 product=product.slug, fingerprint=key.fingerprint[:8], reason=reason[:200])
    return key


def _key_find(*, product: Product, fingerprint_prefix: str, key_pk: int | None) -> Key:
    keys = Key.objects.filter(product_id=product.pk)
    if key_pk is not None:
        found = list(keys.filter(pk=key_pk))
        what = f"key #{key_pk}"
    else:
        prefix = fingerprint_prefix.strip().lower()
        if len(prefix) < MIN_PREFIX or set(prefix) - set("0123456789abcdef"):
            raise BadInput(f"fingerprint prefix {fingerprint_prefix!r}: give at least {MIN_PREFIX} hex characters")
        # The range lets the (product, fingerprint) index serve the search on every engine and
        # collation; startswith keeps it exact.
        found = list(keys.filter(fingerprint__gte=prefix, fingerprint__lt=prefix + "g",
                                 fingerprint__startswith=prefix)[:2])
        what = f"key with fingerprint {prefix}…"
    if not found:
        raise NotFound(f"no {what} in product {product.slug!r}")
    if len(found) > 1:
        raise BadInput(f"fingerprint prefix {fingerprint_prefix!r} matches several keys; give more characters")
    return found[0]


def _not_voidable(key: Key) -> str:
    label = f"key #{key.pk} ({key.fingerprint[:8]})"
    if key.status == Key.Status.VOID:
        return f"{label} is already void"
    order_no = Key.objects.filter(pk=key.pk).values_list(_ORDER_NO, flat=True).first() or "?"
    return f"{label} is sold (order {order_no}) and stays sold; refund or replace that order instead"


def key_reveal(*, key_pk: int, actor: str, ip: str = "") -> Secret:
    """One key's plaintext for a member of staff. The audit row is written first, so a reveal
    is on record even if what follows fails."""
    key = _key_get(key_pk)
    audit_record(actor=actor, action="keys.reveal", obj_type="key", obj_id=key.pk, ip=ip, product=key.product.slug,
                 fingerprint=key.fingerprint[:8], status=key.status)
    return key_open(key)


def key_restore(*, key_pk: int, actor: str, ip: str = "") -> Key:
    """Put a void key back on sale: only one that never went to an order. A key voided by a
    refund or a replacement has been in a buyer's hands, so it is never sold again."""
    key = _key_get(key_pk)
    label = f"key #{key.pk} ({key.fingerprint[:8]})"
    if key.status != Key.Status.VOID:
        raise Conflict(f"{label} is {key.status}, not void: only a void key can be restored")
    order_no = Key.objects.filter(pk=key.pk, order_keys__isnull=False).values_list(_ORDER_NO, flat=True).first()
    if order_no or key.sold_at is not None:
        raise Conflict(f"{label} went to order {order_no or '?'} ({key.void_reason or 'void'}): a key a buyer has "
                       "seen is never sold again; add a new key instead")
    # Conditional: a key sold meanwhile has sold_at set and is no longer void.
    if not Key.objects.filter(pk=key.pk, status=Key.Status.VOID, sold_at__isnull=True).update(
            status=Key.Status.AVAILABLE, void_reason=""):
        raise Conflict(f"{label} changed while it was being restored; look at it again")
    audit_record(actor=actor, action="keys.restore", obj_type="key", obj_id=key.pk, ip=ip, product=key.product.slug,
                 fingerprint=key.fingerprint[:8], was=key.void_reason)
    low_stock_rearm(product=key.product)
    key.refresh_from_db()
    return key


def _key_get(key_pk: int) -> Key:
    key = Key.objects.select_related("product").filter(pk=key_pk).first()
    if key is None:
        raise NotFound(f"no key #{key_pk}")
    return key


def keys_reseal(*, product: Product, actor: str, ip: str = "", chunk_size: int = 1000) -> int:
    """Re-seal the product's keys still under the old shared AAD (`Key.Seal.SHARED`): bound to
    their product and fingerprint, under the primary data key. Returns how many were resealed.
    Each chunk commits on its own, so a run cut short is resumed by running it again; the update
    is conditional on the old format, so two runs at once never seal a key twice."""
    done, last = 0, 0
    shared = Key.objects.filter(product_id=product.pk, seal=Key.Seal.SHARED)
    while rows := list(shared.filter(id__gt=last).order_by("id")[:chunk_size]):
        sealed = [(key.pk, key_seal(key_open(key).reveal(), product_id=key.product_id, fingerprint=key.fingerprint))
                  for key in rows]  # crypto outside the transaction
        with transaction.atomic():  # one chunk at a time: each key moves to the new format whole
            for pk, (key_id, blob, _) in sealed:
                done += Key.objects.filter(pk=pk, seal=Key.Seal.SHARED).update(
                    key_id=key_id, ciphertext=blob, seal=Key.Seal.BOUND)
        last = rows[-1].pk
    audit_record(actor=actor, action="keys.reseal", obj_type="product", obj_id=product.slug, ip=ip, count=done)
    return done
