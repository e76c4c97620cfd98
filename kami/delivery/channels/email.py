"""The email channel: a buyer's keys, and admin alerts, through Django's mail backend (SMTP in
production: settings EMAIL_BACKEND / EMAIL_HOST / EMAIL_PORT / EMAIL_TIMEOUT).

Every message carries a Message-ID derived from the outbox id, the same on every retry, so a
resend after a crash is recognisable (and de-duplicated by most mail clients).
Errors are described from SMTP codes and exception types only, with any key text scrubbed:
they end up in `last_error` and in log lines.

Without EMAIL_URL (development only: production refuses to start) emails are written to files in
`<data dir>/mail`, never with key text: those files are not mail, and keys live encrypted.

Within a worker pass (`EmailChannel.batch`, entered by the worker through
`kami.delivery.channels.channels_batch`) each thread keeps one SMTP connection across the pass's
messages instead of paying TCP + EHLO + STARTTLS + AUTH + QUIT per email: see `_send`; and the
orders and sealed keys of all the pass's key emails are read in one query instead of one per
email: see `_order_and_key_rows`.
"""
from __future__ import annotations

import logging
import smtplib
import ssl
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from urllib.parse import urlparse

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.mail import EmailMultiAlternatives, get_connection
from django.core.mail.backends.smtp import EmailBackend as SMTPBackend
from django.core.validators import validate_email
from django.template.loader import render_to_string
from django.utils import translation
from django.utils.translation import gettext

from kami.shop.selectors import shop_settings_get
from kami.delivery.alerts import admin_language, event_name
from kami.delivery.channels import PermanentFailure, TemporaryFailure
from kami.delivery.links import link_days, lookup_url, order_link_signed
from kami.delivery.models import OutboxMessage
from kami.orders.models import Order
from kami.orders.selectors import order_and_key_rows, order_key_state, order_keys_open, orders_and_key_rows

log = logging.getLogger("kami.delivery")
FILE_BACKEND = "django.core.mail.backends.filebased.EmailBackend"
SMTP_IDLE_SECONDS = 30  # a kept connection unused this long is closed, not trusted: servers drop idle sessions


class EmailChannel:
    name = "email"

    @contextmanager
    def batch(self, messages: list[OutboxMessage]) -> Iterator[None]:
        """A worker pass: this thread keeps one SMTP connection (opened at the first email) until
        the pass ends, then says QUIT; the pass's key emails share one read of their orders and
        keys (`_order_and_key_rows`). A pass inside a pass (tests) has its own read."""
        outer = (_kept.unsent, _kept.orders)
        _kept.unsent = {i for i in ((m.payload or {}).get("order_id") for m in messages
                                    if m.channel == self.name and m.kind == "order_keys") if isinstance(i, int)}
        _kept.orders = None
        _kept.depth += 1
        try:
            yield
        finally:
            _kept.depth -= 1
            _kept.unsent, _kept.orders = outer
            if not _kept.depth:
                _drop(polite=True)

    def send(self, message: OutboxMessage) -> None:
        try:
            validate_email(message.target)
        except ValidationError:
            raise PermanentFailure("invalid recipient address") from None
        message.message_id = message_id_for(message)
        if message.kind == "order_keys":
            _send_order_keys(message)
        elif message.kind == "order_refunded":
            _deliver(_order_refunded_email(message), secrets=[])
        elif message.kind == "key_replaced":
            _send_key_replaced(message)
        elif message.kind == "order_link":
            _deliver(_order_link_email(message), secrets=[])
        elif message.kind == "admin_alert":
            _deliver(_admin_alert_email(message), secrets=[])
        else:
            raise PermanentFailure(f"the email channel cannot send {message.kind!r} messages")


def message_id_for(message: OutboxMessage) -> str:
    domain = urlparse(settings.KAMI_BASE_URL).hostname or "kami.invalid"
    return f"<kami-outbox-{message.pk}@{domain}>"


def _language(code: str) -> str:
    return code if code in dict(settings.LANGUAGES) else settings.LANGUAGE_CODE


def _send_order_keys(message: OutboxMessage) -> None:
    order, rows = _order_and_key_rows((message.payload or {}).get("order_id"))
    if order is None:
        raise PermanentFailure(f"order id {(message.payload or {}).get('order_id')!r} does not exist")
    if order.status != Order.Status.FULFILLED:
        raise PermanentFailure(f"order {order.order_no} is {order.status}: its keys are not sent")
    keys = [k.reveal() for k in order_keys_open(rows)]
    try:
        email = _order_keys_email(message, order, keys)
    except Exception as exc:  # noqa: BLE001 — a rendering error's text might quote a key: scrub, drop the traceback
        raise TemporaryFailure(_scrub(_describe(exc), keys)) from None
    _deliver(email, secrets=keys)


def _order_and_key_rows(order_id) -> tuple[Order | None, list]:
    """The order and its sealed key rows for a key email. In a pass, one query reads them for all
    the pass's key emails, at the first of them; before each email a short read
    (`order_key_state`) checks that its order's status and keys are still what that read saw, and
    an order changed since (refunded, a key replaced) is read again: nothing goes out on an older
    state than reading it per email would have used. Outside a pass, or for an order the pass
    did not list: this order alone."""
    if order_id not in _kept.unsent:
        return order_and_key_rows(order_id=order_id)
    if _kept.orders is None:
        _kept.orders = orders_and_key_rows(order_ids=_kept.unsent)
    _kept.unsent.discard(order_id)
    order, rows = _kept.orders.get(order_id, (None, []))
    if order is None or order_key_state(order_id=order_id) != (order.status, tuple(row.key_id for row in rows)):
        return order_and_key_rows(order_id=order_id)
    return order, rows


def _order_keys_email(message: OutboxMessage, order: Order, keys: list[str]) -> EmailMultiAlternatives:
    shop = shop_settings_get().name  # the merchant's name (kami shop set name=…), else KAMI_SHOP_NAME
    context = {"shop_name": shop, "order_no": order.order_no, "product_name": order.product.name,
               "quantity": order.quantity, "keys": keys if _keys_in_email(order) else [],
               "instructions": order.product.instructions, **_link_context(order)}
    with translation.override(_language(order.locale)):
        subject = gettext("Your order %(order_no)s at %(shop)s") % {"order_no": order.order_no, "shop": shop}
        text = render_to_string("delivery/order_keys.txt", context)
        html = render_to_string("delivery/order_keys.html", context)
    return _email(message, subject, text, html)


def _link_context(order: Order) -> dict:
    """The order link (signed now, so it works for link_days() from this email) and where to
    ask for a new one."""
    return {"order_link": order_link_signed(order.order_no), "link_days": link_days(), "lookup_url": lookup_url()}


def _order_link_email(message: OutboxMessage) -> EmailMultiAlternatives:
    """A fresh order link, asked for on the lookup page with the order number and this email."""
    order = Order.objects.select_related("product").filter(pk=(message.payload or {}).get("order_id")).first()
    if order is None:
        raise PermanentFailure(f"order id {(message.payload or {}).get('order_id')!r} does not exist")
    shop = shop_settings_get().name  # the merchant's name (kami shop set name=…), else KAMI_SHOP_NAME
    context = {"shop_name": shop, "order_no": order.order_no, "product_name": order.product.name,
               "quantity": order.quantity, **_link_context(order)}
    with translation.override(_language(order.locale)):
        subject = gettext("Your link to order %(order_no)s at %(shop)s") % {"order_no": order.order_no, "shop": shop}
        text = render_to_string("delivery/order_link.txt", context)
        html = render_to_string("delivery/order_link.html", context)
    return _email(message, subject, text, html)


def _order_refunded_email(message: OutboxMessage) -> EmailMultiAlternatives:
    payload = message.payload or {}
    order = Order.objects.select_related("product").filter(pk=payload.get("order_id")).first()
    if order is None:
        raise PermanentFailure(f"order id {payload.get('order_id')!r} does not exist")
    shop = shop_settings_get().name  # the merchant's name (kami shop set name=…), else KAMI_SHOP_NAME
    context = {"shop_name": shop, "order_no": order.order_no, "product_name": order.product.name,
               "amount": order.amount, "currency": order.currency, "reason": payload.get("reason", ""),
               **_link_context(order)}
    with translation.override(_language(order.locale)):
        subject = gettext("Order %(order_no)s at %(shop)s was refunded") % {"order_no": order.order_no, "shop": shop}
        text = render_to_string("delivery/order_refunded.txt", context)
        html = render_to_string("delivery/order_refunded.html", context)
    return _email(message, subject, text, html)


def _admin_alert_email(message: OutboxMessage) -> EmailMultiAlternatives:
    """The alert was rendered in the admin language when queued; the frame around it follows."""
    payload = message.payload or {}
    shop = shop_settings_get().name  # the merchant's name (kami shop set name=…), else KAMI_SHOP_NAME
    subject = " ".join(str(payload.get("subject", "")).split())[:200]  # one line: headers take no newlines
    context = {"shop_name": shop, "event": payload.get("event", ""), "subject": subject,
               "body": payload.get("body", ""), "base_url": settings.KAMI_BASE_URL}
    with translation.override(_language(payload.get("language") or admin_language())):
        context["event_name"] = event_name(context["event"])
        text = render_to_string("delivery/admin_alert.txt", context)
        html = render_to_string("delivery/admin_alert.html", context)
    return _email(message, f"[{shop}] {subject}", text, html)


def _keys_in_email(order: Order) -> bool:
    """The merchant's choice (Product.email_keys), and never into the development mail files."""
    return order.product.email_keys and not writes_files()


def writes_files() -> bool:
    return settings.EMAIL_BACKEND == FILE_BACKEND


def _email(message: OutboxMessage, subject: str, text: str, html: str = "") -> EmailMultiAlternatives:
    email = EmailMultiAlternatives(subject=subject, body=text, from_email=settings.DEFAULT_FROM_EMAIL,
                                   to=[message.target], headers={"Message-ID": message.message_id,
                                                                 "Auto-Submitted": "auto-generated"})
    if html:
        email.attach_alternative(html, "text/html")
    return email


class Pace:
    """At most KAMI_EMAIL_RATE emails a second from this process, whichever sender sends them:
    each email takes the next free slot, 1/rate after the last one, and waits for it. Under a
    provider's limit no email is throttled into a retry's backoff; above it, one a minute late is
    better than one an hour late. No burst: a drop's emails go out evenly from the first."""

    def __init__(self):
        self.lock = threading.Lock()
        self.next_at = 0.0  # time.monotonic() of the next free slot

    def wait(self, rate: float) -> float:
        """Wait for this email's slot; the seconds waited (0 with no limit)."""
        if rate <= 0:
            return 0.0
        with self.lock:
            now = time.monotonic()
            at = max(now, self.next_at)
            self.next_at = at + 1.0 / rate
        if at > now:
            time.sleep(at - now)
        return at - now


_pace = Pace()


def _deliver(email: EmailMultiAlternatives, *, secrets: list[str]) -> None:
    """Hand the email to the backend (`_send`), in its slot under KAMI_EMAIL_RATE, and turn a
    failure into the worker's terms."""
    _pace.wait(settings.KAMI_EMAIL_RATE)
    try:
        sent = _send(email, secrets=secrets)
    except smtplib.SMTPRecipientsRefused as exc:
        codes = [code for code, _ in exc.recipients.values()]
        text = _scrub(_describe(exc), secrets)
        if codes and all(code >= 500 for code in codes):
            raise PermanentFailure(text) from None
        raise TemporaryFailure(text) from None
    except Exception as exc:  # noqa: BLE001 — every other failure is worth another try
        raise TemporaryFailure(_scrub(_describe(exc), secrets)) from None
    if not sent:
        raise TemporaryFailure("the mail backend accepted nothing")
    if writes_files():
        log.warning("EMAIL_URL is not set: an email was written to a file in %s (keys left out), not sent to "
                    "anyone", settings.EMAIL_FILE_PATH)


class _Kept(threading.local):
    """This thread's state for a worker pass (each worker thread has its own): the kept SMTP
    connection, and the read of the pass's orders and keys."""
    depth = 0  # EmailChannel.batch entered, not yet left
    backend: SMTPBackend | None = None
    used_at = 0.0  # time.monotonic() of its last successful send
    unsent: set = frozenset()  # order ids of the pass's key emails not sent yet
    orders: dict | None = None  # their orders and key rows (orders_and_key_rows), once read


_kept = _Kept()


def _send(email: EmailMultiAlternatives, *, secrets: list[str]) -> int:
    """Send over this thread's kept SMTP connection inside a pass (`EmailChannel.batch`);
    outside a pass, or with another backend (the development mail files), one connection per
    message as before.

    A failure must not poison the next message: after any exception the connection is closed and
    dropped, so the next email opens a fresh one. A kept connection the server closed between
    messages (`_stale`: idle timeout, server restart) is tried once more, for this same email,
    on a fresh connection; a failure there is the email's own failure, reported as before.
    That retry cannot lose an email: the outbox row stays `sending` until this call returns,
    and only a send that returned normally makes it `sent` — a failed retry is an ordinary
    failed attempt (backoff, then `manual`). At worst it sends twice: a server that accepted
    the DATA and then dropped the connection before its 250 reached us gets the email again,
    with the same Message-ID — the duplicate the outbox already accepts after a crash
    (docs/delivery.md, "at least once, recognisably")."""
    if not _kept.depth:
        return get_connection(fail_silently=False).send_messages([email])
    if _kept.backend is not None and time.monotonic() - _kept.used_at > SMTP_IDLE_SECONDS:
        _drop(polite=False)
    while True:
        reused = _kept.backend is not None
        try:
            if not reused:
                backend = get_connection(fail_silently=False)
                if not isinstance(backend, SMTPBackend):
                    return backend.send_messages([email])  # the file backend: one file per message, as before
                _kept.backend = backend
                backend.open()
            sent = _kept.backend.send_messages([email])
        except Exception as exc:
            _drop(polite=False)
            if not (reused and _stale(exc)):  # a fresh connection never retries: the loop ends here
                raise
            log.warning("the kept SMTP connection was closed by the server (%s); sending %s again on a fresh "
                        "connection", _scrub(_describe(exc), secrets), email.extra_headers.get("Message-ID", ""))
            continue
        _kept.used_at = time.monotonic()
        return sent


def _stale(exc: BaseException) -> bool:
    """The server closed the kept connection between messages: it went away (disconnected,
    reset, broken pipe — seen on the first command after the pause) or said so (421, "closing
    transmission channel"). A timeout is not one: a server that hangs would hang again."""
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        return bool(exc.recipients) and all(code == 421 for code, _ in exc.recipients.values())
    if isinstance(exc, smtplib.SMTPResponseException):
        return exc.smtp_code == 421
    return isinstance(exc, (smtplib.SMTPServerDisconnected, ConnectionError, ssl.SSLEOFError, ssl.SSLZeroReturnError))


def _drop(*, polite: bool) -> None:
    """Forget this thread's kept connection. Polite (a pass ending): QUIT first. After a failure
    or an idle spell: just close the socket — the server may not answer, and a goodbye it never
    reads is not worth waiting EMAIL_TIMEOUT for."""
    backend, _kept.backend = _kept.backend, None
    if backend is None:
        return
    if polite:
        with suppress(Exception):  # the server is gone already: nothing to say goodbye to
            backend.close()
    if backend.connection is not None:
        with suppress(Exception):
            backend.connection.close()
        backend.connection = None


def _describe(exc: BaseException) -> str:
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        code, reply = next(iter(exc.recipients.values()), (0, b""))
        return f"recipient refused: SMTP {code} {_reply(reply)}"
    if isinstance(exc, smtplib.SMTPResponseException):
        return f"{type(exc).__name__}: SMTP {exc.smtp_code} {_reply(exc.smtp_error)}"
    if isinstance(exc, OSError) and exc.strerror:
        return f"{type(exc).__name__}: {exc.strerror}"
    return f"{type(exc).__name__}: {str(exc)[:160]}"


def _reply(reply: bytes | str) -> str:
    text = reply.decode("utf-8", "replace") if isinstance(reply, bytes) else str(reply)
    return " ".join(text.split())[:160]


def _scrub(text: str, secrets: list[str]) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


def _send_key_replaced(message: OutboxMessage) -> None:
    """'A key of your order was replaced' (kami.fulfilment.replace), with the new key while it
    is still the order's (a key replaced again is left to the later email)."""
    from kami.orders.models import OrderKey
    from kami.stock.vault import key_open

    payload = message.payload or {}
    order = Order.objects.select_related("product").filter(pk=payload.get("order_id")).first()
    if order is None:
        raise PermanentFailure(f"order id {payload.get('order_id')!r} does not exist")
    link = OrderKey.objects.select_related("key").filter(order=order, key_id=payload.get("key_id")).first()
    keys = [key_open(link.key).reveal()] if link else []
    shop = shop_settings_get().name
    context = {"shop_name": shop, "order_no": order.order_no, "product_name": order.product.name,
               "key": keys[0] if keys and _keys_in_email(order) else "", **_link_context(order)}
    try:
        with translation.override(_language(order.locale)):
            subject = gettext("A key of order %(order_no)s at %(shop)s was replaced") % {"order_no": order.order_no,
                                                                                        "shop": shop}
            email = _email(message, subject, render_to_string("delivery/key_replaced.txt", context),
                           render_to_string("delivery/key_replaced.html", context))
    except Exception as exc:  # noqa: BLE001 — a rendering error's text might quote the key: scrub it
        raise TemporaryFailure(_scrub(_describe(exc), keys)) from None
    _deliver(email, secrets=keys)
