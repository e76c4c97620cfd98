"""Card keys at rest: AES-256-GCM with a key id stored beside each ciphertext, and an
HMAC-SHA256 fingerprint of the normalised key for uniqueness.

The keyring comes from `KAMI_DATA_KEY` or the data directory (see `core.datadir`). The first
entry encrypts; every entry decrypts, so a data key can be rotated by putting a new one first.
The fingerprint key is derived from the *last* (oldest) entry so fingerprints stay stable
across rotations.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import os
import unicodedata
from dataclasses import dataclass
from functools import lru_cache

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from kami.core import datadir

NONCE_BYTES = 12


class KeyringError(Exception):
    pass


class Secret(str):
    """A str that never shows its value by accident: repr, str(), print, f-strings, `%s` and
    `format` all give a mask (tracebacks, debug logs, error messages). `reveal()` is the one
    deliberate way to the plaintext."""

    def __repr__(self) -> str:
        return "Secret(***)"

    __str__ = __repr__

    def __format__(self, spec: str) -> str:
        return format(repr(self), spec)

    def reveal(self) -> str:
        return str.__str__(self)


@dataclass(frozen=True)
class Keyring:
    primary_id: str
    keys: dict[str, bytes]
    fingerprint_key: bytes

    @classmethod
    def parse(cls, text: str) -> "Keyring":
        keys: dict[str, bytes] = {}
        order: list[str] = []
        for raw in text.replace("\n", ",").split(","):
            entry = raw.strip()
            if not entry:
                continue
            key_id, _, material = entry.rpartition(":")
            try:
                secret = base64.b64decode(material, validate=True)
            except ValueError:
                raise KeyringError("data key: an entry is not valid base64") from None
            if len(secret) != 32:
                raise KeyringError("data key: each key must be 32 bytes (base64 of 32 random bytes)")
            key_id = key_id or "k" + hashlib.sha256(secret).hexdigest()[:6]
            if len(key_id) > 16:
                raise KeyringError("data key: a key id is at most 16 characters")
            keys[key_id] = secret
            order.append(key_id)
        if not order:
            raise KeyringError("data key: the keyring is empty")
        fingerprint_key = HKDF(
            algorithm=hashes.SHA256(), length=32, salt=None, info=b"kami fingerprint v1"
        ).derive(keys[order[-1]])
        return cls(primary_id=order[0], keys=keys, fingerprint_key=fingerprint_key)

    def encrypt(self, plaintext: str, *, aad: bytes = b"") -> tuple[str, bytes]:
        nonce = os.urandom(NONCE_BYTES)
        blob = AESGCM(self.keys[self.primary_id]).encrypt(nonce, plaintext.encode("utf-8"), aad or None)
        return self.primary_id, nonce + blob

    def decrypt(self, key_id: str, blob: bytes, *, aad: bytes = b"") -> Secret:
        try:
            key = self.keys[key_id]
        except KeyError:
            raise KeyringError(f"data key {key_id!r} is not in the keyring; restore it from your backup") from None
        blob = bytes(blob)
        return Secret(AESGCM(key).decrypt(blob[:NONCE_BYTES], blob[NONCE_BYTES:], aad or None).decode("utf-8"))

    def fingerprint(self, normalised: str, *, scope: str = "") -> str:
        message = scope.encode() + b"\x00" + normalised.encode("utf-8")
        return hmac.new(self.fingerprint_key, message, hashlib.sha256).hexdigest()


@lru_cache(maxsize=1)
def keyring() -> Keyring:
    return Keyring.parse(datadir.keyring_text())


def normalise_key(text: str) -> str:
    """What makes two keys 'the same': Unicode NFC, surrounding white space dropped."""
    return unicodedata.normalize("NFC", text).strip()


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def token_matches(token: str, stored_hash: str) -> bool:
    return hmac.compare_digest(token_hash(token), stored_hash)
