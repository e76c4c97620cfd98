"""A small flash sale against real `kami serve` processes, for the process tests: pending orders
made in one `kami shell` process, the gateway played by a pool of senders (each notification
retried until acknowledged, as in test_database_restart), and the counts every such test ends
with, read from the shop's database afterwards."""
from __future__ import annotations

import json
import threading
import time
from collections import Counter

from tests.faults.processes import kami_run
from tests.faults.servers import db_counts, db_rows  # noqa: F401 (the process tests import them from here too)
from tests.faults.test_database_restart import Gateway

MAKE_ORDERS = """
import json
from kami.catalog.models import Product
from kami.orders.services import order_create
from kami.stock.generator import keys_generate
product = Product.objects.get(slug={slug!r})
if {keys}:
    keys_generate(product=product, count={keys})
made = []
for i in range({count}):
    order, _ = order_create(product=product, quantity=1 + i % {max_quantity}, email=f"buyer{{i}}@example.com",
                            gateway="sandbox")
    made.append([order.order_no, str(order.amount)])
print("ORDERS" + json.dumps(made))
"""


def orders_make(env: dict, *, count: int, slug: str = "gift-50", max_quantity: int = 1,
                keys: int = 0) -> list[tuple[str, str]]:
    """`keys` more keys for `slug`, then `count` pending sandbox orders of it, quantities
    1..max_quantity in turn, in one process: [(order_no, amount)]."""
    code = MAKE_ORDERS.format(slug=slug, count=count, max_quantity=max_quantity, keys=keys)
    done = kami_run(["shell", "-c", code], env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    return [tuple(o) for o in json.loads(done.stdout.split("ORDERS", 1)[1])]


class Storm:
    """Notifies every order through `bases` (order i to bases[i % n]) from `senders` threads, each
    notification retried every 0.3 s until answered "ok". `acked` counts the "ok"s per order."""

    def __init__(self, bases: list[str], orders: list[tuple[str, str]], *, senders: int = 16, seconds: float = 300):
        self.gateways = [Gateway(base) for base in bases]
        self.orders, self.senders = orders, senders
        self.deadline = time.monotonic() + seconds
        self.queue = list(enumerate(orders))
        self.lock = threading.Lock()
        self.threads: list[threading.Thread] = []

    def start(self) -> Storm:
        self.threads = [threading.Thread(target=self._send, daemon=True) for _ in range(self.senders)]
        for thread in self.threads:
            thread.start()
        return self

    def _send(self) -> None:
        while True:
            with self.lock:
                if not self.queue:
                    return
                i, (order_no, amount) = self.queue.pop(0)
            self.gateways[i % len(self.gateways)].notify_until_acknowledged(order_no, amount, self.deadline)

    def join(self) -> None:
        for thread in self.threads:
            thread.join(timeout=max(self.deadline - time.monotonic(), 0) + 10)

    def notify_again(self, orders: list[tuple[str, str]]) -> None:
        """A gateway repeating notifications it already had an "ok" for."""
        for i, (order_no, amount) in enumerate(orders):
            self.gateways[i % len(self.gateways)].notify_until_acknowledged(order_no, amount, time.monotonic() + 30)

    @property
    def acked(self) -> Counter:
        total: Counter = Counter()
        for gateway in self.gateways:
            with gateway.lock:
                total.update(gateway.acked)
        return total

    def answers(self) -> Counter:
        """(status, body) of every answer, for the report."""
        found: Counter = Counter()
        for gateway in self.gateways:
            with gateway.lock:
                found.update((status, body[:20]) for _, _, _, status, body in gateway.answers)
        return found


COUNTS = {
    "orders": "SELECT COUNT(*) FROM orders_order",
    "fulfilled": "SELECT COUNT(*) FROM orders_order WHERE status = 'fulfilled'",
    "awaiting_stock": "SELECT COUNT(*) FROM orders_order WHERE status = 'awaiting_stock'",
    "other_status": "SELECT COUNT(*) FROM orders_order WHERE status NOT IN ('fulfilled', 'awaiting_stock')",
    "payments": "SELECT COUNT(*) FROM payments_payment",
    "payments_twice": "SELECT COUNT(*) - COUNT(DISTINCT order_id) FROM payments_payment",
    "fulfilled_events": "SELECT COUNT(*) FROM orders_orderevent WHERE kind = 'fulfilled'",
    "keys_sold": "SELECT COUNT(*) FROM stock_key WHERE status = 'sold'",
    "keys_wanted": "SELECT COALESCE(SUM(quantity), 0) FROM orders_order WHERE status = 'fulfilled'",
    "keys_sold_twice": "SELECT COUNT(*) - COUNT(DISTINCT key_id) FROM orders_orderkey",
    "orders_with_wrong_key_count": "SELECT COUNT(*) FROM orders_order o WHERE o.quantity <> "
                                   "(SELECT COUNT(*) FROM orders_orderkey k WHERE k.order_id = o.id) "
                                   "AND o.status = 'fulfilled'",
    "keys_on_unfulfilled_orders": "SELECT COUNT(*) FROM orders_orderkey k JOIN orders_order o ON o.id = k.order_id "
                                  "WHERE o.status <> 'fulfilled'",
    "emails_queued": "SELECT COUNT(*) FROM delivery_outboxmessage WHERE kind = 'order_keys'",
    "emails_sent": "SELECT COUNT(*) FROM delivery_outboxmessage WHERE kind = 'order_keys' AND status = 'sent'",
}


def sale_is_whole(counts: dict, *, orders: int) -> None:
    """What every storm ends with: each order paid once and either fulfilled with exactly its keys
    or awaiting stock with none; no key twice; one key email per fulfilled order, sent."""
    assert counts["orders"] == orders and counts["other_status"] == 0
    assert counts["payments"] == orders and counts["payments_twice"] == 0
    assert counts["fulfilled_events"] == counts["fulfilled"]
    assert counts["keys_sold"] == counts["keys_wanted"] and counts["keys_sold_twice"] == 0
    assert counts["orders_with_wrong_key_count"] == 0 and counts["keys_on_unfulfilled_orders"] == 0
    assert counts["emails_queued"] == counts["emails_sent"] == counts["fulfilled"]
