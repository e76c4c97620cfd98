"""Generating keys: a CSPRNG over an alphabet a person can read back without mistakes.

The alphabet has 32 symbols (no 0/O or 1/I), so each `X` of a pattern carries exactly 5 bits
and a random byte maps onto it without bias (256 is a multiple of 32). Generated keys go through
the import's batch path, so a collision with a stored key is just skipped and drawn again.
"""
from __future__ import annotations

import math
import secrets
from collections.abc import Callable

from kami.catalog.models import Product
from kami.core.crypto import normalise_key
from kami.core.errors import BadInput, Conflict
from kami.stock.importer import Progress, Sealed, batch_finish, batch_start, line_check, write_chunk
from kami.stock.report import ImportReport
from kami.stock.vault import key_seal

ALPHABET = "23456789ABCDEFGHJKLMNPQRSTUVWXYZ"
BITS_PER_SYMBOL = int(math.log2(len(ALPHABET)))
MIN_BITS = 40
DEFAULT_PATTERN = "XXXX-XXXX-XXXX-XXXX"
MAX_COUNT = 1_000_000
_BYTE_TO_SYMBOL = bytes(ord(ALPHABET[b % len(ALPHABET)]) for b in range(256))


def pattern_bits(pattern: str) -> int:
    return pattern.count("X") * BITS_PER_SYMBOL


def pattern_compile(pattern: str) -> Callable[[], str]:
    """A function drawing one key for `pattern`; refuses patterns too easy to guess."""
    problem, _ = line_check(pattern.encode("utf-8"))
    if problem or normalise_key(pattern) != pattern or not pattern:
        reason = problem or "it must not be empty or start or end with spaces"
        raise BadInput(f"--pattern {pattern!r}: {reason}")
    bits = pattern_bits(pattern)
    if bits < MIN_BITS:
        raise BadInput(f"--pattern {pattern!r} has {bits} bits of randomness; use at least "
                       f"{MIN_BITS // BITS_PER_SYMBOL} X (each X is {BITS_PER_SYMBOL} bits), e.g. {DEFAULT_PATTERN}")
    template = pattern.replace("{", "{{").replace("}", "}}").replace("X", "{}")
    width = pattern.count("X")

    def draw() -> str:
        return template.format(*secrets.token_bytes(width).translate(_BYTE_TO_SYMBOL).decode("ascii"))

    return draw


def keys_generate(*, product: Product, count: int, pattern: str = DEFAULT_PATTERN, actor: str = "cli", ip: str = "",
                  batch_size: int = 2000, on_progress: Progress | None = None) -> ImportReport:
    """Generate `count` new keys for `product`. `report.duplicates` counts collisions redrawn."""
    if not 1 <= count <= MAX_COUNT:
        raise BadInput(f"--count must be between 1 and {MAX_COUNT:,}; run it again for more")
    draw = pattern_compile(pattern)
    batch, report = batch_start(product=product, source=f"generated {pattern}", actor=actor)
    drawn = barren = 0
    while report.imported < count:
        want = min(batch_size, count - report.imported)
        chunk = [_sealed(drawn + i + 1, draw(), product_id=product.pk) for i in range(want)]
        drawn += want
        barren = 0 if write_chunk(batch=batch, chunk=chunk, report=report) else barren + 1
        if barren >= 3:
            raise Conflict(f"--pattern {pattern!r}: new keys keep colliding with stored ones; use more X")
        if on_progress:
            on_progress(report)
    batch_finish(batch=batch, report=report, action="keys.generate", ip=ip, pattern=pattern,
                 bits=pattern_bits(pattern))
    return report


def _sealed(number: int, text: str, *, product_id: int) -> Sealed:
    key_id, blob, fingerprint = key_seal(text, product_id=product_id)
    return Sealed(number, key_id, blob, fingerprint)

