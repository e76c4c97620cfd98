"""Card keys at rest: AES-256-GCM with a key id stored beside each ciphertext, and an
HMAC-SHA256 fingerprint of the normalised key for uniqueness.

The keyring comes from `KAMI_DATA_KEY` or the data directory (see `core.datadir`). The first
entry encrypts; every entry decrypts, so a data key can be rotated by putting a new one first
(`kami keys rotate-data-key`, kami.ops.rotation, does it and re-encrypts what is stored).

The fingerprint key must never change: a duplicate is found by comparing fingerprints, so keys
fingerprinted under two fingerprint keys would never meet. It is derived from the *last*
(oldest) data key, or given outright by a `fingerprint:<base64>` entry, which the rotation
writes so that the oldest data key can later be retired without moving the fingerprints.

Every process reads the keyring again when its source changes (the file replaced, the
variable set anew), so a web or worker process that was running before a rotation opens keys
sealed under the new data key without a restart.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
import unicodedata
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from kami.core import datadir

NONCE_BYTES = 12
FINGERPRINT_ENTRY = "fingerprint"  # the reserved id of the entry that gives the fingerprint key itself


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
        pinned: bytes | None = None
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
            if key_id == FINGERPRINT_ENTRY:
                pinned = secret
                continue
            key_id = key_id or "k" + hashlib.sha256(secret).hexdigest()[:6]
            if len(key_id) > 16:
                raise KeyringError("data key: a key id is at most 16 characters")
            if keys.get(key_id, secret) != secret:
                raise KeyringError(f"data key: two different keys carry the id {key_id!r}; give each its own id")
            keys[key_id] = secret
        if not keys:
            raise KeyringError("data key: the keyring is empty")
        fingerprint_key = pinned or HKDF(
            algorithm=hashes.SHA256(), length=32, salt=None, info=b"kami fingerprint v1"
        ).derive(list(keys.values())[-1])
        return cls(primary_id=next(iter(keys)), keys=keys, fingerprint_key=fingerprint_key)

    def text(self) -> str:
        """The keyring as the data key file holds it: data keys newest first, one a line, then
        the fingerprint key pinned (so removing the oldest data key never moves fingerprints)."""
        lines = [f"{key_id}:{base64.b64encode(secret).decode()}" for key_id, secret in self.keys.items()]
        lines.append(f"{FINGERPRINT_ENTRY}:{base64.b64encode(self.fingerprint_key).decode()}")
        return "\n".join(lines) + "\n"

    def with_new_key(self) -> "Keyring":
        """This keyring with a new random data key first (it encrypts from now on), the others
        kept to decrypt, and the same fingerprint key."""
        key_id = "k" + secrets.token_hex(3)
        while key_id in self.keys:
            key_id = "k" + secrets.token_hex(3)
        keys = {key_id: secrets.token_bytes(32), **self.keys}
        return Keyring(primary_id=key_id, keys=keys, fingerprint_key=self.fingerprint_key)

    def without(self, key_id: str) -> "Keyring":
        """This keyring less one data key that is not the first; the fingerprint key stays."""
        if key_id not in self.keys:
            raise KeyringError(f"data key {key_id!r} is not in the keyring (it holds {', '.join(self.keys)})")
        if key_id == self.primary_id:
            raise KeyringError(f"data key {key_id!r} is the newest one, which seals every new key: it cannot be retired")
        keys = {k: v for k, v in self.keys.items() if k != key_id}
        return Keyring(primary_id=self.primary_id, keys=keys, fingerprint_key=self.fingerprint_key)

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


_loaded: tuple[tuple, Keyring] | None = None


def keyring() -> Keyring:
    """The keyring, parsed again whenever its source changed since the last call (one stat)."""
    global _loaded
    stamp = keyring_stamp()  # taken before the read: a change in between is seen on the next call
    if _loaded is None or _loaded[0] != stamp:
        _loaded = (stamp, Keyring.parse(datadir.keyring_text()))
    return _loaded[1]


def keyring_stamp() -> tuple:
    """What changes when the keyring does: the variable's value, or the file's identity, size
    and times (a rewrite replaces the file, so the inode changes too)."""
    if os.environ.get("KAMI_DATA_KEY"):
        return ("env", os.environ["KAMI_DATA_KEY"])
    path = keyring_path()
    try:
        info = os.stat(path)
    except FileNotFoundError:
        return ("file", path, None)
    return ("file", path, info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns)


_paths: dict[tuple[str, str], Path] = {}


def keyring_path() -> Path:
    """`<data dir>/data_key`, resolved once per data dir setting (datadir.data_dir also creates
    and checks the directory, too much for every key opened)."""
    where = (os.environ.get("KAMI_DATA_DIR", "var"), os.getcwd())
    if where not in _paths:
        _paths[where] = datadir.data_dir() / "data_key"
    return _paths[where]


@dataclass(frozen=True)
class SealedRows:
    """Rows an app keeps sealed with the data key outside the key table (a bot token, webhook
    secrets). The app registers them at start (its AppConfig.ready), so the data-key rotation
    (kami.ops.rotation) counts and moves them without importing the app: layers point down."""

    name: str
    key_ids: Callable[[], Iterable[str]]  # the data key id of each sealed value
    move: Callable[[str], int]  # seal every value not under this key id with it; how many moved


_sealed_rows: list[SealedRows] = []


def sealed_rows_register(rows: SealedRows) -> None:
    if all(r.name != rows.name for r in _sealed_rows):
        _sealed_rows.append(rows)


def sealed_rows() -> list[SealedRows]:
    return list(_sealed_rows)


def normalise_key(text: str) -> str:
    """What makes two keys 'the same': Unicode NFC, surrounding white space dropped."""
    return unicodedata.normalize("NFC", text).strip()


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def token_matches(token: str, stored_hash: str) -> bool:
    return hmac.compare_digest(token_hash(token), stored_hash)
