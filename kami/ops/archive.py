"""The encrypted backup file. Format 1, written down so it can be opened without Kami:

    header   b"KAMIBAK1" · salt (16 bytes) · scrypt log2(n) (1 byte) · r (1 byte) · p (1 byte)
             · nonce prefix (7 bytes)                                     — 34 bytes in all
    chunks   repeated: length (4 bytes, big-endian) · AES-256-GCM ciphertext of up to 1 MiB + tag

key = scrypt(passphrase as UTF-8, salt, n, r, p, 32 bytes). Chunk i is sealed with nonce =
prefix · i (4 bytes, big-endian) · final (1 byte: 1 on the last chunk, else 0) and the header as
associated data (the STREAM construction): a chunk moved, dropped, altered or cut off at the end
does not open. The plaintext is a gzip'd tar (kami.ops.backup lists its members)."""
from __future__ import annotations

import io
import os
import struct
from typing import BinaryIO

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from kami.core.errors import BadInput

MAGIC = b"KAMIBAK1"
CHUNK = 1024 * 1024
SCRYPT_LOG_N, SCRYPT_R, SCRYPT_P = 17, 8, 1  # 128 MiB of memory, about half a second: per file, not per chunk
HEADER = struct.Struct(">8s16sBBB7s")


def _key(passphrase: str, salt: bytes, log_n: int, r: int, p: int) -> AESGCM:
    if not passphrase:
        raise BadInput("the passphrase is empty: a backup needs one (at least 12 characters)")
    return AESGCM(Scrypt(salt=salt, length=32, n=2 ** log_n, r=r, p=p).derive(passphrase.encode("utf-8")))


def _nonce(prefix: bytes, index: int, final: bool) -> bytes:
    return prefix + struct.pack(">IB", index, int(final))


class SealingWriter(io.RawIOBase):
    """A write-only file: what is written goes out to `out` sealed, chunk by chunk."""

    def __init__(self, out: BinaryIO, passphrase: str):
        salt, self._prefix = os.urandom(16), os.urandom(7)
        self._header = HEADER.pack(MAGIC, salt, SCRYPT_LOG_N, SCRYPT_R, SCRYPT_P, self._prefix)
        self._aead = _key(passphrase, salt, SCRYPT_LOG_N, SCRYPT_R, SCRYPT_P)
        self._out, self._buffer, self._index = out, bytearray(), 0
        out.write(self._header)

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        self._buffer += data
        while len(self._buffer) > CHUNK:  # keep at least one byte back: the last chunk is sealed `final`
            self._seal(bytes(self._buffer[:CHUNK]), final=False)
            del self._buffer[:CHUNK]
        return len(data)

    def close(self) -> None:
        if not self.closed:
            self._seal(bytes(self._buffer), final=True)
            self._out.flush()
        super().close()

    def _seal(self, plain: bytes, *, final: bool) -> None:
        sealed = self._aead.encrypt(_nonce(self._prefix, self._index, final), plain, self._header)
        self._out.write(struct.pack(">I", len(sealed)) + sealed)
        self._index += 1


class OpeningReader(io.RawIOBase):
    """A read-only file over a sealed backup: each chunk is authenticated before a byte of it is
    returned; a file cut short or tampered with raises BadInput."""

    def __init__(self, source: BinaryIO, passphrase: str):
        header = source.read(HEADER.size)
        if len(header) != HEADER.size or not header.startswith(MAGIC):
            raise BadInput("this is not a Kami backup (no KAMIBAK1 header): check the file name")
        _, salt, log_n, r, p, self._prefix = HEADER.unpack(header)
        self._header, self._aead = header, _key(passphrase, salt, log_n, r, p)
        self._source, self._plain, self._index, self._done = source, b"", 0, False

    def readable(self) -> bool:
        return True

    def readinto(self, target) -> int:
        while not self._plain and not self._done:
            self._plain = self._next_chunk()
        count = min(len(target), len(self._plain))
        target[:count], self._plain = self._plain[:count], self._plain[count:]
        return count

    def _next_chunk(self) -> bytes:
        length = self._source.read(4)
        if len(length) < 4:
            raise BadInput("the backup file is cut short (its last part is missing): use another copy")
        sealed = self._source.read(struct.unpack(">I", length)[0])
        for final in (False, True):
            try:
                plain = self._aead.decrypt(_nonce(self._prefix, self._index, final), sealed, self._header)
            except InvalidTag:
                continue
            self._index, self._done = self._index + 1, final
            if final and self._source.read(1):
                raise BadInput("the backup file has data after its end: it was altered; use another copy")
            return plain
        if self._index == 0:
            raise BadInput("wrong passphrase (or the backup file was altered)")
        raise BadInput(f"the backup file is damaged at part {self._index + 1}: use another copy")
