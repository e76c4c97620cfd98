"""Standard Webhooks signatures (https://www.standardwebhooks.com), and the endpoint secrets.

    webhook-id: msg_…                    the same on every retry of one event to one endpoint
    webhook-timestamp: <unix seconds>    when this attempt was signed
    webhook-signature: v1,<base64 HMAC-SHA256 of "<id>.<timestamp>.<body>">[ v1,<…with the previous secret>]

A secret is `whsec_` + base64 of 32 random bytes; the HMAC key is the decoded bytes. Secrets are
stored sealed with the data key (AES-GCM, kami.core.crypto), because signing needs them back; they
are shown once, when made.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

from kami.core.crypto import keyring

PREFIX = "whsec_"
AAD = b"kami:webhook-endpoint-secret"


def secret_new() -> str:
    return PREFIX + base64.b64encode(secrets.token_bytes(32)).decode("ascii")


def msg_id_new() -> str:
    return "msg_" + secrets.token_hex(12)


def secret_seal(secret: str) -> tuple[str, bytes]:
    return keyring().encrypt(secret, aad=AAD)


def secret_open(key_id: str, blob) -> str:
    return keyring().decrypt(key_id, bytes(blob), aad=AAD).reveal()


def signature(*, secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """One `v1,<base64>` signature of the body with `secret`."""
    key = base64.b64decode(secret.removeprefix(PREFIX))
    mac = hmac.new(key, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode("ascii")


def signature_header(*, secrets_: list[str], msg_id: str, timestamp: int, body: bytes) -> str:
    """The `webhook-signature` value: one signature per valid secret, space-separated (during a
    rotation both the new and the previous secret sign, so either verifies)."""
    return " ".join(signature(secret=s, msg_id=msg_id, timestamp=timestamp, body=body) for s in secrets_)
