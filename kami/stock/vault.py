"""Encrypting, decrypting and fingerprinting card keys (invariant 5)."""
from __future__ import annotations

from kami.core.crypto import Secret, keyring, normalise_key

KEY_AAD = b"kami:key"


def key_seal(plaintext: str) -> tuple[str, bytes, str]:
    """(key id, ciphertext, fingerprint) for a key's text, normalised first."""
    ring = keyring()
    normal = normalise_key(plaintext)
    key_id, blob = ring.encrypt(normal, aad=KEY_AAD)
    return key_id, blob, ring.fingerprint(normal, scope="key")


def key_fingerprint(plaintext: str) -> str:
    return keyring().fingerprint(normalise_key(plaintext), scope="key")


def key_open(*, key_id: str, ciphertext: bytes) -> Secret:
    return keyring().decrypt(key_id, ciphertext, aad=KEY_AAD)
