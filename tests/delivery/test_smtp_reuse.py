"""One SMTP connection per worker pass (kami/delivery/channels/email.py `_send`), against a real
SMTP server that tells its sessions apart: kept across the pass, dropped after a failure, tried
once more on a fresh connection when the server closed it between messages."""
from __future__ import annotations

import asyncio
import logging
import threading
from pathlib import Path

import pytest

from kami.delivery.channels import email as email_channel
from kami.delivery.channels.email import FILE_BACKEND
from kami.delivery.models import OutboxMessage
from kami.delivery.worker import run_once
from tests.delivery.conftest import Mailbox, keys_message, smtp_serving

EMAILS = 30


class Sessions(Mailbox):
    """A Mailbox that notes the SMTP session (one per connection) each message came over, and
    can hang up on a connection that already carried `hang_up_after` messages when its next
    MAIL arrives: abruptly (`hang_up="drop"`) or saying so first (`hang_up="421"`)."""

    def __init__(self):
        super().__init__()
        self.sessions: list[object] = []  # per message received, the session it came over
        self.hang_up_after: int | None = None
        self.hang_up = "drop"
        self.hung_up = 0
        self._done: dict[int, int] = {}  # id(session) → messages it carried
        self._state = threading.Lock()

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        with self._state:
            due = self.hang_up_after is not None and self._done.get(id(session), 0) == self.hang_up_after
            if due:
                self.hung_up += 1
        if due and self.hang_up == "drop":
            server.transport.close()
            await asyncio.sleep(30)  # no reply: the connection's end cancels this session meanwhile
        if due:
            server.loop.call_later(0.05, server.transport.close)  # this transport, whoever closes first
            return "421 4.3.2 closing the connection, try again"
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        reply = await super().handle_DATA(server, session, envelope)
        with self._state:
            self.sessions.append(session)  # kept alive here, so id() stays unique
            self._done[id(session)] = self._done.get(id(session), 0) + 1
        return reply

    def connections(self) -> int:
        with self._state:
            return len({id(s) for s in self.sessions})


@pytest.fixture
def smtp(settings):
    yield from smtp_serving(settings, Sessions())


def key_orders(fulfilled_order, make_product, count: int = EMAILS, first: int = 0) -> list[OutboxMessage]:
    product = make_product(name="Gift card", max_qty=1)
    orders = [fulfilled_order(keys=[f"GIFT-{i:04d}"], email=f"buyer{i}@example.com", product=product)
              for i in range(first, first + count)]
    return [keys_message(order) for order in orders]


def assert_each_delivered(smtp: Sessions, rows: list[OutboxMessage], *, at_most: int = 1) -> None:
    """Every row sent, its email received 1..`at_most` times, always with its own Message-ID and
    to its own buyer."""
    for row in rows:
        row.refresh_from_db()
        assert (row.status, row.attempts) == ("sent", 1), (row.pk, row.last_error)
        mails = smtp.to(row.target)
        assert 1 <= len(mails) <= at_most, (row.target, len(mails))
        assert {str(m["Message-ID"]) for m in mails} == {row.message_id} == {f"<kami-outbox-{row.pk}@testserver>"}
        assert all(str(m["To"]) == row.target for m in mails)
    assert len(set(smtp.message_ids())) == len(rows)


@pytest.mark.django_db(transaction=True)
def test_a_pass_sends_all_its_emails_over_one_connection(smtp, fulfilled_order, make_product):
    # given
    rows = key_orders(fulfilled_order, make_product)
    # when: one pass takes them all
    assert run_once("w1") == EMAILS
    # then
    assert_each_delivered(smtp, rows)
    assert smtp.connections() == 1
    # when: the next pass has something to send, it opens its own connection (the last one was closed)
    more = key_orders(fulfilled_order, make_product, count=2, first=EMAILS)
    assert run_once("w1") == 2
    # then
    assert_each_delivered(smtp, rows + more)
    assert smtp.connections() == 2


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("hang_up", ["drop", "421"])
def test_a_connection_the_server_closed_is_tried_again_once_on_a_fresh_one(smtp, fulfilled_order, make_product,
                                                                           caplog, hang_up):
    # given: the server hangs up on a connection after its 5th message, when the 6th begins
    smtp.hang_up_after, smtp.hang_up = 5, hang_up
    rows = key_orders(fulfilled_order, make_product, count=12)
    # when
    with caplog.at_level(logging.WARNING, logger="kami.delivery"):
        assert run_once("w1") == 12
    # then: nothing lost, nothing failed; the 6th and the 11th went again, each over a new connection
    assert_each_delivered(smtp, rows, at_most=2)
    assert smtp.hung_up == 2 and smtp.connections() == 3
    retries = [r.getMessage() for r in caplog.records if "again on a fresh connection" in r.getMessage()]
    assert len(retries) == 2
    assert rows[5].message_id in retries[0] and rows[10].message_id in retries[1]
    assert all("GIFT-" not in line for line in retries)


@pytest.mark.django_db(transaction=True)
def test_a_fresh_connection_that_fails_is_not_tried_again(smtp, fulfilled_order, make_product, caplog):
    # given: a server that hangs up on every connection as its first MAIL arrives
    smtp.hang_up_after = 0
    rows = key_orders(fulfilled_order, make_product, count=2)
    # when
    with caplog.at_level(logging.WARNING, logger="kami.delivery"):
        assert run_once("w1") == 2
    # then: one connection per email, each a failed attempt that the outbox retries later, as before
    assert smtp.hung_up == 2 and smtp.messages == []
    for row in rows:
        row.refresh_from_db()
        assert (row.status, row.attempts) == ("failed", 1)
        assert row.last_error.startswith("SMTPServerDisconnected")
    assert not any("again on a fresh connection" in r.getMessage() for r in caplog.records)


@pytest.mark.django_db(transaction=True)
def test_a_refused_recipient_fails_alone_and_the_rest_go_over_a_fresh_connection(smtp, fulfilled_order,
                                                                                   make_product):
    # given: the mail server refuses the 15th buyer for good
    smtp.refuse["buyer14@example.com"] = "550 5.1.1 <buyer14@example.com>: no such user"
    rows = key_orders(fulfilled_order, make_product)
    refused, others = rows[14], rows[:14] + rows[15:]
    # when
    assert run_once("w1") == EMAILS
    # then: that one is manual, with the server's reason and no key
    refused.refresh_from_db()
    assert (refused.status, refused.attempts) == ("manual", 1)
    assert "550" in refused.last_error and "GIFT-" not in refused.last_error
    assert smtp.to(refused.target) == []
    # and every other email went out, those after it over a second connection
    assert_each_delivered(smtp, others)
    by_id = {str(m["Message-ID"]): s for m, s in zip(smtp.messages, smtp.sessions)}
    before = {id(by_id[r.message_id]) for r in rows[:14]}
    after = {id(by_id[r.message_id]) for r in rows[15:]}
    assert len(before) == 1 and len(after) == 1 and before != after
    assert smtp.connections() == 2


@pytest.mark.django_db(transaction=True)
def test_a_connection_left_idle_is_not_trusted(smtp, fulfilled_order, make_product, monkeypatch, caplog):
    # given: every pause between two emails counts as idle
    monkeypatch.setattr(email_channel, "SMTP_IDLE_SECONDS", -1)
    rows = key_orders(fulfilled_order, make_product, count=3)
    # when
    with caplog.at_level(logging.WARNING, logger="kami.delivery"):
        assert run_once("w1") == 3
    # then: a new connection for each, opened before sending, so nothing to try again
    assert_each_delivered(smtp, rows)
    assert smtp.connections() == 3
    assert not any("again on a fresh connection" in r.getMessage() for r in caplog.records)


@pytest.mark.django_db(transaction=True)
def test_without_email_url_each_email_is_written_once_to_the_mail_files(settings, tmp_path: Path, fulfilled_order,
                                                                        make_product):
    # given: the development backend (no EMAIL_URL)
    settings.EMAIL_BACKEND, settings.EMAIL_FILE_PATH = FILE_BACKEND, str(tmp_path)
    rows = key_orders(fulfilled_order, make_product, count=3)
    # when
    assert run_once("w1") == 3
    # then: every email written once, none with a key. (Usually a file each; but Django names a
    # file by the second and the backend's id(), which a freed backend's successor may reuse within
    # that second, and then two emails share a file: seen once in a full run.)
    written = "".join(f.read_text() for f in sorted(tmp_path.iterdir()))
    for row in rows:
        row.refresh_from_db()
        assert row.status == "sent"
        assert written.count(row.message_id) == 1
    assert "GIFT-" not in written
