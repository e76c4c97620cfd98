"""Encrypting, decrypting and fingerprinting card keys (invariant 5).

A ciphertext is bound to its place: the AAD names the product and the key's fingerprint, so a
ciphertext copied onto another row, or into another product, fails to open instead of handing a
buyer someone else's key. Not the row id: it does not exist before the bulk INSERT, and asking
for it would cost a query per key; the fingerprint is known at sealing time and unique per
product (`key_unique_per_product`), so (product, fingerprint) names exactly one row.

Rows stored before the binding carry `seal = Key.Seal.SHARED` (one constant AAD for every key)
and still open; `keys_reseal` (kami.stock.services, `kami keys reseal SLUG`) moves them over.
"""
from __future__ import annotations

from cryptography.exceptions import InvalidTag

from kami.core.crypto import KeyringError, Secret, keyring, normalise_key
from kami.stock.models import Key

SHARED_AAD = b"kami:key"  # the old format's one AAD, kept to open rows not yet resealed


class KeyMisplaced(KeyringError):
    """A stored key whose ciphertext does not open where it stands: moved from another row or
    product, or altered. Never retried; the row needs restoring from a backup."""


def key_aad(*, product_id: int, fingerprint: str) -> bytes:
    return b"kami:key:v2:%d:%s" % (product_id, fingerprint.encode("ascii"))


def key_seal(plaintext: str, *, product_id: int, fingerprint: str = "") -> tuple[str, bytes, str]:
    """(data key id, ciphertext, fingerprint) for a key's text, normalised first, sealed for
    `product_id` (stored with `seal = Key.Seal.BOUND`). `fingerprint`: the one the row will
    carry when it is not the usual one (a manual delivery's, scoped to its order)."""
    ring = keyring()
    normal = normalise_key(plaintext)
    fingerprint = fingerprint or ring.fingerprint(normal, scope="key")
    key_id, blob = ring.encrypt(normal, aad=key_aad(product_id=product_id, fingerprint=fingerprint))
    return key_id, blob, fingerprint


def key_fingerprint(plaintext: str) -> str:
    return keyring().fingerprint(normalise_key(plaintext), scope="key")


def key_open(key) -> Secret:
    """A stored key's plaintext: the one function every reader (order page, email, export,
    reveal, reseal) opens keys with. `key` is a Key, or any row with its `product_id`,
    `fingerprint`, `key_id`, `ciphertext` and `seal` (a named values_list row, for exports)."""
    if key.seal == Key.Seal.SHARED:
        aad = SHARED_AAD
    else:
        aad = key_aad(product_id=key.product_id, fingerprint=key.fingerprint)
    try:
        return keyring().decrypt(key.key_id, key.ciphertext, aad=aad)
    except InvalidTag:
        raise KeyMisplaced(
            f"key #{getattr(key, 'id', '?')} ({key.fingerprint[:8]}) of product #{key.product_id} does not open: its "
            "ciphertext was moved from another key or product, or altered; restore this row from a backup") from None
