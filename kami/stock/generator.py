"""Generating keys: a CSPRNG over an alphabet a person can read back without mistakes.

The alphabet has 32 symbols (no 0/O or 1/I), so each `X` of a pattern carries exactly 5 bits
and a random byte maps onto it without bias (256 is a multiple of 32). Generated keys go through
the import's batch path (bulk sealing, `write_chunk`), so a collision with a stored key is just
skipped and drawn again, and a million keys take about what a million-line import takes
(docs/performance.md, "Export and generation").
"""
from __future__ import annotations

import math
import secrets
from collections.abc import Callable, Iterator
from contextlib import closing

from kami.catalog.models import Product
from kami.core.crypto import normalise_key
from kami.core.errors import BadInput, Conflict
from kami.stock.bulk import chunk_size
from kami.stock.importer import Progress, Sealed, ahead, batch_finish, batch_start, line_check, write_chunk
from kami.stock.report import ImportReport
from kami.stock.vault import keys_seal_bulk

ALPHABET = "23456789ABCDEFGHJKLMNPQRSTUVWXYZ"
BITS_PER_SYMBOL = int(math.log2(len(ALPHABET)))
MIN_BITS = 40
DEFAULT_PATTERN = "XXXX-XXXX-XXXX-XXXX"
MAX_COUNT = 1_000_000
_BYTE_TO_SYMBOL = bytes(ord(ALPHABET[b % len(ALPHABET)]) for b in range(256))


def pattern_bits(pattern: str) -> int:
    return pattern.count("X") * BITS_PER_SYMBOL


def pattern_compile(pattern: str) -> Callable[[int], list[str]]:
    """A function drawing `n` keys for `pattern` at once; refuses patterns too easy to guess.

    One read of the system's random source per chunk (not per key), mapped onto the alphabet by
    one `bytes.translate`. The keys come out normalised, as the import stores them."""
    problem, _ = line_check(pattern.encode("utf-8"))
    if problem or normalise_key(pattern) != pattern or not pattern:
        reason = problem or "it must not be empty or start or end with spaces"
        raise BadInput(f"--pattern {pattern!r}: {reason}")
    bits = pattern_bits(pattern)
    if bits < MIN_BITS:
        raise BadInput(f"--pattern {pattern!r} has {bits} bits of randomness; use at least "
                       f"{MIN_BITS // BITS_PER_SYMBOL} X (each X is {BITS_PER_SYMBOL} bits), e.g. {DEFAULT_PATTERN}")
    fill = pattern.replace("{", "{{").replace("}", "}}").replace("X", "{}").format
    width = pattern.count("X")
    # A literal combining mark after an X composes with the symbol drawn: only then normalise.
    exact = pattern.isascii()

    def draw(n: int) -> list[str]:
        symbols = secrets.token_bytes(width * n).translate(_BYTE_TO_SYMBOL).decode("ascii")
        keys = [fill(*symbols[i:i + width]) for i in range(0, width * n, width)]
        return keys if exact else [normalise_key(key) for key in keys]

    return draw


def keys_generate(*, product: Product, count: int, pattern: str = DEFAULT_PATTERN, actor: str = "cli", ip: str = "",
                  batch_size: int | None = None, on_progress: Progress | None = None) -> ImportReport:
    """Generate `count` new keys for `product`. `report.duplicates` counts collisions redrawn.

    Drawing and sealing run in a thread one chunk ahead of the writing (the import's `ahead`),
    through the import's own write path (`write_chunk`), chunks as large as the import's. A key
    that collides (with a stored one, or within its chunk) is skipped; the shortfall is drawn
    again once the pass is written."""
    if not 1 <= count <= MAX_COUNT:
        raise BadInput(f"--count must be between 1 and {MAX_COUNT:,}; run it again for more")
    draw = pattern_compile(pattern)
    size = batch_size or chunk_size()
    batch, report = batch_start(product=product, source=f"generated {pattern}", actor=actor)
    drawn = barren = 0
    while report.imported < count:
        # closing(): an error while writing stops the drawing thread at once, as in the importer
        with closing(ahead(_sealed_chunks(draw, count - report.imported, size=size, first=drawn + 1,
                                          product_id=product.pk))) as chunks:
            for chunk in chunks:
                drawn += len(chunk)
                barren = 0 if write_chunk(batch=batch, chunk=chunk, report=report) else barren + 1
                if barren >= 3:
                    raise Conflict(f"--pattern {pattern!r}: new keys keep colliding with stored ones; use more X")
                if on_progress:
                    on_progress(report)
    batch_finish(batch=batch, report=report, action="keys.generate", ip=ip, pattern=pattern,
                 bits=pattern_bits(pattern))
    return report


def _sealed_chunks(draw: Callable[[int], list[str]], total: int, *, size: int, first: int,
                   product_id: int) -> Iterator[list[Sealed]]:
    """`total` new keys, drawn and sealed `size` at a time, numbered from `first` (the report's
    "line" numbers)."""
    for start in range(0, total, size):
        sealed = keys_seal_bulk(draw(min(size, total - start)), product_id=product_id)
        yield [Sealed(first + start + i, *item) for i, item in enumerate(sealed)]
