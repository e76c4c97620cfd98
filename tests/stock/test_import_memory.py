"""A million-line import on every engine, in flat memory, while the same product sells (field lesson: imports that
choke on large files; merchants restock while the shop is selling)."""
from __future__ import annotations

import random
import threading
import time
from collections import Counter

import pytest
from django.db import connection
from django.db.models import Count
from django.test import Client

from kami.orders.models import Order, OrderKey
from kami.stock.models import Key
from kami.stock.services import keys_import
from kami.stock.vault import key_fingerprint, key_open
from tests.factories import add_keys, make_orders
from tests.memory import RssWatch
from tests.sandbox_play import enable_sandbox, sandbox_notify

# On every engine, as issue 10 asks: each has its own write path (COPY on PostgreSQL, multi-row
# INSERTs after a look-up on MariaDB and SQLite). The suite had room for it again once its passes
# fell under ten minutes (docs/performance.md, "Test suite").
LINES = 1_000_000
BUYERS = 60
SAMPLE = 2_000
# Holding every fingerprint (64-character str, ~113 bytes, plus a set slot) would take over
# 120 MB for a million keys, and every line's text over 70 MB. Streaming holds at most three
# chunks (read, queued, written: kami.stock.importer.ahead) of 5,000–10,000 keys, about 300
# bytes a key each, plus the buyer thread's requests: 10–30 MiB measured. Measured as the
# process's resident memory (tracemalloc would make the import minutes slower).
RSS_BOUND = 48 * 1024 * 1024


def _key(i: int) -> str:
    return f"GIFT-{i:09d}-QX7R"


@pytest.mark.slow
@pytest.mark.timeout(1800)
@pytest.mark.django_db(transaction=True)
def test_million_line_import_keeps_memory_flat_while_the_product_sells(make_product, tmp_path, keys_truncated):
    # given: a million lines: distinct keys, a key repeated near the end, a blank and a bad line
    lines = LINES
    path = tmp_path / "million.txt"
    with path.open("w", encoding="utf-8") as f:
        for start in range(0, lines - 3, 50_000):
            f.write("".join(f"{_key(i)}\n" for i in range(start, min(start + 50_000, lines - 3))))
        f.write(f"{_key(7)}\n\nbad\x01line\n")
    enable_sandbox()
    product = make_product(max_qty=1)
    # and one sale before it all, so the first request's imports (views, gateways, templates,
    # translations: tens of MB, once per process) do not count as the import's memory
    add_keys(product, ["WARM-UP"])
    (order,) = make_orders(product, [1])
    assert sandbox_notify(Client(), order_no=order.order_no, amount=str(order.amount)).content == b"ok"
    buyer = _Buyer(product)
    # when: buyers pay for keys of the product while its import runs
    watch = RssWatch()
    watch.start()
    buyer.start()
    started = time.monotonic()
    try:
        with path.open("rb") as stream:
            report = keys_import(product=product, stream=stream, source="million.txt")
    finally:
        buyer.importing = False
        watch.done.set()
        watch.join()
        buyer.join()
    elapsed = time.monotonic() - started
    # then: the report is exact
    print(f"\n1M-line import on {connection.vendor}: {elapsed:.1f} s, RSS growth {watch.growth / 2**20:.1f} MiB, "
          f"{buyer.during} of {BUYERS} orders paid during the import")
    assert (report.imported, report.duplicate_in_file, report.blank, report.invalid) == (lines - 3, 1, 1, 1)
    assert report.duplicate_in_file_lines == [lines - 2] and report.invalid_lines == [(lines, "contains control character U+0001")]
    assert watch.growth < RSS_BOUND, f"RSS grew {watch.growth / 2**20:.1f} MiB: the import is not streaming"
    # and every key is there once, sealed for this product
    keys = Key.objects.filter(product=product)
    assert keys.count() == lines - 3 + 1
    assert keys.aggregate(n=Count("fingerprint", distinct=True))["n"] == lines - 3 + 1
    picked = sorted(random.Random(10).sample(range(lines - 3), SAMPLE))
    fingerprints = {key_fingerprint(_key(i)): _key(i) for i in picked}
    opened = {k.fingerprint: key_open(k).reveal() for k in keys.filter(fingerprint__in=list(fingerprints))}
    assert opened == fingerprints
    # and the sales went through: every order fulfilled, no key sold twice
    assert buyer.errors == []
    assert buyer.during > 0, "no order was paid while the import ran: the test proves nothing"
    assert Counter(Order.objects.filter(product=product).values_list("status", flat=True)) == {"fulfilled": BUYERS + 1}
    sold = OrderKey.objects.filter(key__product=product).values_list("key_id", flat=True)
    assert len(sold) == len(set(sold)) == BUYERS + 1 == keys.filter(status="sold").count()


class _Buyer(threading.Thread):
    """Orders one key and pays for it through the gateway's notify endpoint, again and again,
    once the import's first keys are in, spread over the import; the rest after it ends."""

    def __init__(self, product):
        super().__init__(daemon=True)
        self.product = product
        self.importing, self.during, self.errors = True, 0, []

    def run(self) -> None:
        try:
            while self.importing and not Key.objects.filter(product=self.product, batch__isnull=False).exists():
                time.sleep(0.05)
            client = Client()
            for _ in range(BUYERS):
                (order,) = make_orders(self.product, [1])
                response = sandbox_notify(client, order_no=order.order_no, amount=str(order.amount))
                if response.status_code != 200 or response.content != b"ok":
                    self.errors.append((order.order_no, response.status_code, response.content[:200]))
                self.during += self.importing
                if self.importing:
                    time.sleep(0.2)
        except Exception as exc:  # noqa: BLE001 — surfaced by the test's assertions
            self.errors.append(repr(exc))
        finally:
            connection.close()  # this thread's own connection
