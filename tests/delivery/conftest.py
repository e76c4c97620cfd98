"""Delivery tests run against a real SMTP server (aiosmtpd on 127.0.0.1) and orders made
fulfilled the way the product makes them: order API, then a signed sandbox notification."""
from __future__ import annotations

import email
import logging
import threading
from email import policy
from email.message import EmailMessage

import pytest
from aiosmtpd.controller import Controller

from kami.core import clock
from kami.delivery.models import OutboxMessage
from kami.orders.models import Order
from tests.sandbox_play import enable_sandbox, sandbox_notify
from tests.factories import add_keys  # noqa: F401 (re-exported for the tests here)
from tests.ports import free_port


class Mailbox:
    """An aiosmtpd handler that keeps what it receives; `refuse` maps an address to the reply
    its RCPT gets (e.g. "550 5.1.1 no such user")."""

    def __init__(self):
        self.messages: list[EmailMessage] = []
        self.refuse: dict[str, str] = {}
        self.port = 0
        self._lock = threading.Lock()

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address in self.refuse:
            return self.refuse[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        message = email.message_from_bytes(envelope.content, policy=policy.default)
        with self._lock:
            self.messages.append(message)
        return "250 Message accepted for delivery"

    def to(self, address: str) -> list[EmailMessage]:
        with self._lock:
            return [m for m in self.messages if address in str(m["To"])]

    def message_ids(self) -> list[str]:
        with self._lock:
            return [str(m["Message-ID"]) for m in self.messages]



@pytest.fixture
def smtp(settings):
    yield from smtp_serving(settings, Mailbox())


def smtp_serving(settings, box: Mailbox):
    """Serve `box` (a Mailbox, or a subclass a test module's own `smtp` fixture passes) on
    loopback and point Django's SMTP backend at it, for as long as the generator is not closed."""
    box.port = free_port()
    server_log = logging.getLogger("mail.log")
    level = server_log.level
    server_log.setLevel(logging.INFO)  # the test server logs each DATA line at DEBUG: that is the mail itself
    controller = Controller(box, hostname="127.0.0.1", port=box.port)
    controller.start()
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT, settings.EMAIL_TIMEOUT = "127.0.0.1", box.port, 5
    settings.EMAIL_HOST_USER = settings.EMAIL_HOST_PASSWORD = ""
    settings.EMAIL_USE_TLS = settings.EMAIL_USE_SSL = False
    settings.DEFAULT_FROM_EMAIL = "Kami Test <noreply@shop.test>"
    yield box
    controller.stop()
    server_log.setLevel(level)


@pytest.fixture(autouse=True)
def real_time():
    clock.travel(None)
    yield
    clock.travel(None)




@pytest.fixture
def fulfilled_order(client, make_product):
    """Make an order fulfilled through the order API and a signed sandbox notification."""
    enable_sandbox()

    def make(*, keys=("AAAA-1111",), locale="en", email="buyer@example.com", product=None, name="Steam Wallet 100"):
        product = product or make_product(name=name)
        add_keys(product, keys)
        response = client.post("/api/v1/orders", {"product": product.slug, "quantity": len(keys), "email": email,
                                                  "gateway": "sandbox"}, content_type="application/json",
                               HTTP_ACCEPT_LANGUAGE=locale)
        assert response.status_code == 201, response.content
        data = response.json()
        assert sandbox_notify(client, order_no=data["order_no"], amount=data["amount"]).status_code == 200
        order = Order.objects.get(order_no=data["order_no"])
        assert order.status == Order.Status.FULFILLED and order.locale == locale
        return order

    return make


def keys_message(order: Order) -> OutboxMessage:
    return OutboxMessage.objects.get(dedupe_key=f"order_keys:{order.pk}:email")


def run_forever_until(done, *, timeout: float = 60, **options) -> list[BaseException]:
    """`run_forever` in a thread of its own (its own connection, closed after), stopped after the
    first pass at whose end `done()` is true; what it raised. Fails if it did not stop in time."""
    from django.db import connection

    from kami.delivery.worker import run_forever

    stop, errors = threading.Event(), []

    def on_pass():
        if done():
            stop.set()

    def loop():
        try:
            run_forever("looper", poll_seconds=0.05, stop_event=stop, on_pass=on_pass, **options)
        except BaseException as exc:  # noqa: BLE001 — reported by the test
            errors.append(exc)
        finally:
            connection.close()

    thread = threading.Thread(target=loop)
    thread.start()
    thread.join(timeout=timeout)
    assert not thread.is_alive(), "run_forever did not stop"
    return errors
