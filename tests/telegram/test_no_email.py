"""A bot order without an email, below the bot: PostgreSQL's one-statement confirm fulfils it and
queues no email row (the chat's row comes from the registered lookup), staff cannot resend its
keys by email, and a refund queues no email."""
from __future__ import annotations

from decimal import Decimal

import pytest
from django.db import connection, transaction

from kami.core import clock
from kami.core.errors import BadInput
from kami.delivery.models import OutboxMessage
from kami.fulfilment.checkout import checkout_start
from kami.fulfilment.confirm import payment_confirm
from kami.fulfilment.confirm_mariadb import confirm_mariadb
from kami.fulfilment.confirm_sql import confirm_set_based
from kami.fulfilment.refund import order_refund
from kami.fulfilment.resend import order_delivery_resend
from kami.orders.services import payment_grace
from kami.payments.interface import Notice
from kami.telegram.services import order_owner
from tests.factories import add_keys
from tests.sandbox_play import enable_sandbox

pytestmark = pytest.mark.django_db(transaction=True)


def order_without_email(make_product):
    enable_sandbox()
    product = make_product(name="Steam Wallet 100", price=Decimal("29.90"))
    add_keys(product, ["KEY-AAA-1"])
    return checkout_start(product_slug=product.slug, quantity=1, email="", gateway="sandbox",
                          owner=order_owner(user_id=555, chat_id=555)).order


def test_the_set_based_confirm_queues_no_email_row_for_an_order_without_one(make_product):
    if connection.vendor == "sqlite":
        pytest.skip("SQLite has no set-based confirm: the ORM path, tested below")
    confirm = confirm_mariadb if connection.vendor == "mysql" else confirm_set_based
    # given
    order = order_without_email(make_product)
    notice = Notice(order_no=order.order_no, trade_no="T-NOEMAIL", amount=Decimal("29.90"), currency="CNY", paid=True)
    # when
    with transaction.atomic():  # as the confirm runs it: one transaction
        applied = confirm(gateway="sandbox", notice=notice, now=clock.now(), grace=payment_grace())
    # then: the statement (MariaDB: the sequence) fulfilled it, with no email row
    assert applied is not None and applied.order_id == order.pk
    assert not OutboxMessage.objects.filter(channel="email").exists()


def test_an_order_without_an_email_gets_its_keys_in_the_chat_and_never_an_email(make_product):
    # given
    order = order_without_email(make_product)
    # when
    payment_confirm(gateway="sandbox", notice=Notice(order_no=order.order_no, trade_no="T-1",
                                                     amount=Decimal("29.90"), currency="CNY", paid=True))
    # then
    rows = OutboxMessage.objects.filter(kind="order_keys")
    assert [(r.channel, r.target) for r in rows] == [("telegram_chat", "555")]
    with pytest.raises(BadInput, match="has no email address"):
        order_delivery_resend(order_id=order.pk, actor="staff")
    # when: it is refunded
    order_refund(order_no=order.order_no, reason="test", actor="staff")
    # then: still nothing for an email
    assert not OutboxMessage.objects.filter(channel="email").exists()
    order.refresh_from_db()
    assert order.status == "refunded"
