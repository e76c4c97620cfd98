"""A million-line import in flat memory (field lesson: imports that choke on large files)."""
from __future__ import annotations

import time

import pytest

from kami.stock.models import Key
from kami.stock.services import keys_import
from tests.memory import RssWatch

LINES = 1_000_000
# Holding every fingerprint (64-character str, ~113 bytes, plus a set slot) would take over
# 120 MB for a million keys, and every line's text over 70 MB; streaming stays far below this.
# Measured as the process's resident memory (tracemalloc would make the import minutes slower).
RSS_BOUND = 24 * 1024 * 1024


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_million_line_import_keeps_memory_flat(make_product, tmp_path):
    # given: a million distinct keys, with a duplicate and a blank line near the end
    path = tmp_path / "million.txt"
    with path.open("w", encoding="utf-8") as f:
        for i in range(LINES - 2):
            f.write(f"GIFT-{i:09d}-QX7R\n")
        f.write("GIFT-000000007-QX7R\n\n")
    product = make_product()
    # when
    watch = RssWatch()
    watch.start()
    started = time.monotonic()
    try:
        with path.open("rb") as stream:
            report = keys_import(product=product, stream=stream, source="million.txt")
    finally:
        watch.done.set()
        watch.join()
    elapsed = time.monotonic() - started
    # then
    print(f"\n1M-line import: {elapsed:.1f} s, RSS growth {watch.growth / 2**20:.1f} MiB")
    assert (report.imported, report.duplicate_in_file, report.blank) == (LINES - 2, 1, 1)
    assert report.duplicate_in_file_lines == [LINES - 1]
    assert Key.objects.filter(product=product).count() == LINES - 2
    assert watch.growth < RSS_BOUND, f"RSS grew {watch.growth / 2**20:.1f} MiB: the import is not streaming"
