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

import hashlib
import hmac
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from kami.core.crypto import NONCE_BYTES, KeyringError, Secret, keyring, normalise_key
from kami.stock.models import Key

SHARED_AAD = b"kami:key"  # the old format's one AAD, kept to open rows not yet resealed


class KeyMisplaced(KeyringError):
    """A stored key whose ciphertext does not open where it stands: moved from another row or
    product, or altered. Never retried; the row needs restoring from a backup."""


def key_aad(*, product_id: int, fingerprint: str) -> bytes:
    return _aad_prefix(product_id) + fingerprint.encode("ascii")


def _aad_prefix(product_id: int) -> bytes:
    return b"kami:key:v2:%d:" % product_id


def key_seal(plaintext: str, *, product_id: int, fingerprint: str = "") -> tuple[str, bytes, str]:
    """(data key id, ciphertext, fingerprint) for a key's text, normalised first, sealed for
    `product_id` (stored with `seal = Key.Seal.BOUND`). `fingerprint`: the one the row will
    carry when it is not the usual one (a manual delivery's, scoped to its order)."""
    ring = keyring()
    normal = normalise_key(plaintext)
    fingerprint = fingerprint or ring.fingerprint(normal, scope="key")
    key_id, blob = ring.encrypt(normal, aad=key_aad(product_id=product_id, fingerprint=fingerprint))
    return key_id, blob, fingerprint


def keys_seal_bulk(normalised: list[str], *, product_id: int) -> list[tuple[str, bytes, str]]:
    """`key_seal` for many keys already normalised (the importer's `line_check` did it), in the
    same format: one AES-GCM context, one HMAC state copied per key and one read of the
    system's random source for all the nonces instead of one of each per key (about half the
    CPU of calling key_seal in a loop). tests/stock/test_bulk.py checks what it seals opens
    with `key_open` and fingerprints like `key_fingerprint`."""
    ring = keyring()
    key_id = ring.primary_id
    aead = AESGCM(ring.keys[key_id])
    mac = hmac.new(ring.fingerprint_key, b"key\x00", hashlib.sha256)  # Keyring.fingerprint(…, scope="key")
    aad = _aad_prefix(product_id)
    nonces = os.urandom(NONCE_BYTES * len(normalised))
    sealed = []
    for i, text in enumerate(normalised):
        data = text.encode("utf-8")
        h = mac.copy()
        h.update(data)
        fingerprint = h.hexdigest()
        nonce = nonces[i * NONCE_BYTES:(i + 1) * NONCE_BYTES]
        sealed.append((key_id, nonce + aead.encrypt(nonce, data, aad + fingerprint.encode("ascii")), fingerprint))
    return sealed


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


# The columns `keys_open_many` reads, in this order, at the start of each row.
OPEN_COLUMNS = ("id", "fingerprint", "key_id", "ciphertext", "seal")


def keys_open_many(rows: list[tuple], *, product_id: int) -> list[str]:
    """The plaintexts of many stored keys of one product, in the order of `rows`: the bulk
    reader of the export, with the same checks as `key_open`. Each row starts with
    `OPEN_COLUMNS` (a values_list row; more columns may follow).

    Plain `str`, not `Secret`: they go straight into the export's output. One AESGCM object per
    data key for the whole call (building one costs more than a decryption), and one list
    comprehension when every row is under the same data key and bound (the usual case):
    docs/performance.md, "Export and generation", has the figures."""
    ring, prefix, bound = keyring(), _aad_prefix(product_id), Key.Seal.BOUND.value
    key_ids = {row[2] for row in rows}
    if len(key_ids) == 1 and all(row[4] == bound for row in rows):
        decrypt = _cipher(ring, key_ids.pop()).decrypt
        try:
            # Indexing, not `_, fp, _, blob, *_ = row`: the starred name builds a list per row.
            return [decrypt(row[3][:NONCE_BYTES], row[3][NONCE_BYTES:], prefix + row[1].encode("ascii")).decode("utf-8")
                    for row in rows]
        except InvalidTag:
            pass  # the loop below names the row
    ciphers, plain, shared = {}, [], Key.Seal.SHARED.value
    for row in rows:
        pk, fingerprint, key_id, blob, seal = row[:5]
        cipher = ciphers.get(key_id) or ciphers.setdefault(key_id, _cipher(ring, key_id))
        aad = prefix + fingerprint.encode("ascii") if seal != shared else SHARED_AAD
        try:
            plain.append(cipher.decrypt(blob[:NONCE_BYTES], blob[NONCE_BYTES:], aad).decode("utf-8"))
        except InvalidTag:
            raise KeyMisplaced(
                f"key #{pk} ({fingerprint[:8]}) of product #{product_id} does not open: its ciphertext was moved "
                "from another key or product, or altered; restore this row from a backup") from None
    return plain


def keys_reseal_rows(rows: list[tuple]) -> list[tuple[int, str, bytes]]:
    """(id, data key id, ciphertext) for stored keys sealed again under the primary data key
    and bound to their product and fingerprint: the data-key rotation's step (kami.ops.rotation).
    Each row is `OPEN_COLUMNS` then `product_id`. The plaintexts never leave this function; the
    fingerprint is kept as stored (it does not depend on the data key), so the row stays the
    one its (product, fingerprint) names and duplicates are still found across data keys."""
    ring = keyring()
    target, seal = ring.primary_id, AESGCM(ring.keys[ring.primary_id])
    ciphers, shared = {}, Key.Seal.SHARED.value
    nonces = os.urandom(NONCE_BYTES * len(rows))
    out = []
    for i, (pk, fingerprint, key_id, blob, kind, product_id) in enumerate(rows):
        blob = bytes(blob)
        cipher = ciphers.get(key_id) or ciphers.setdefault(key_id, _cipher(ring, key_id))
        bound = key_aad(product_id=product_id, fingerprint=fingerprint)
        try:
            plain = cipher.decrypt(blob[:NONCE_BYTES], blob[NONCE_BYTES:], SHARED_AAD if kind == shared else bound)
        except InvalidTag:
            raise KeyMisplaced(
                f"key #{pk} ({fingerprint[:8]}) of product #{product_id} does not open: its ciphertext was moved "
                "from another key or product, or altered; restore this row from a backup") from None
        nonce = nonces[i * NONCE_BYTES:(i + 1) * NONCE_BYTES]
        out.append((pk, target, nonce + seal.encrypt(nonce, plain, bound)))
    return out


def _cipher(ring, key_id: str) -> AESGCM:
    try:
        return AESGCM(ring.keys[key_id])
    except KeyError:
        raise KeyringError(f"data key {key_id!r} is not in the keyring; restore it from your backup") from None
