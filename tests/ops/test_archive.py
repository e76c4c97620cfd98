"""The backup file format (kami.ops.archive): what goes in comes out, and a wrong passphrase, a
file cut short or a flipped byte is refused with a sentence saying so."""
from __future__ import annotations

import io
import os

import pytest

from kami.core.errors import BadInput
from kami.ops import archive
from kami.ops.archive import OpeningReader, SealingWriter

pytestmark = pytest.mark.sqlite_only


@pytest.fixture(autouse=True)
def cheap_scrypt(monkeypatch):
    monkeypatch.setattr(archive, "SCRYPT_LOG_N", 10)  # the format records n: tests need not pay 128 MiB


def seal(plain: bytes, passphrase: str = "a long passphrase") -> bytes:
    out = io.BytesIO()
    with SealingWriter(out, passphrase) as writer:
        for start in range(0, len(plain), 300_000):  # written in pieces, as tar writes
            writer.write(plain[start:start + 300_000])
    return out.getvalue()


def opened(sealed: bytes, passphrase: str = "a long passphrase") -> bytes:
    return OpeningReader(io.BytesIO(sealed), passphrase).read()


@pytest.mark.parametrize("size", [0, 1, archive.CHUNK, archive.CHUNK + 1, 3 * archive.CHUNK + 17])
def test_what_is_sealed_opens_the_same(size):
    # given
    plain = os.urandom(size)
    # when
    sealed = seal(plain)
    # then
    assert opened(sealed) == plain
    assert sealed.startswith(b"KAMIBAK1")
    assert size < 64 or plain[:64] not in sealed


def test_a_wrong_passphrase_is_refused():
    with pytest.raises(BadInput, match="wrong passphrase"):
        opened(seal(b"x" * 10), passphrase="another passphrase")


@pytest.mark.parametrize("damage, says", [
    (lambda b: b[:-1], "damaged"),                                   # the last chunk cut
    (lambda b: b[:archive.HEADER.size + 4 + archive.CHUNK + 16], "cut short"),  # whole last chunk dropped
    (lambda b: b[:5000] + bytes([b[5000] ^ 1]) + b[5001:], "wrong passphrase"),  # the first chunk altered
    (lambda b: b + b"\0", "data after its end"),
    (lambda b: b"NOTKAMI!" + b[8:], "not a Kami backup"),
])
def test_a_damaged_file_is_refused(damage, says):
    # given a file of two chunks
    sealed = seal(os.urandom(archive.CHUNK + 10))
    # when / then
    with pytest.raises(BadInput, match=says):
        opened(damage(sealed))
