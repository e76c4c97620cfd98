"""A group commit's batch (PostgreSQL's CONFIRM_POSTGRES_MANY through payments_decide) with orders
made in the bot and on the web: each bot order gets its chat delivery, the web orders none, and the
bot's table is read once for the whole batch, not once per order."""
from __future__ import annotations

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from kami.delivery.models import OutboxMessage
from kami.fulfilment.confirm import payments_decide
from kami.orders.services import order_create
from kami.payments.interface import Notice
from kami.telegram.models import TelegramOrder
from tests.factories import add_keys
from tests.sandbox_play import enable_sandbox

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_batch_reads_the_chats_once_and_queues_each_bot_order_its_chat(make_product, settings):
    if connection.vendor != "postgresql":
        pytest.skip("the batch statement is PostgreSQL's; elsewhere each order is confirmed alone")
    # given: four paid orders of one product, two of them made in the bot
    settings.KAMI_CONFIRM_SQL = True
    enable_sandbox()
    product = make_product()
    add_keys(product, [f"KEY-{n}" for n in range(4)])
    orders = [order_create(product=product, quantity=1, email=f"b{n}@example.com", gateway="sandbox")[0]
              for n in range(4)]
    for order, chat in ((orders[0], 7001), (orders[2], 7003)):
        TelegramOrder.objects.create(order=order, user_id=chat, chat_id=chat)
    notices = sorted((("sandbox", Notice(order_no=o.order_no, trade_no=f"T-{o.pk}", amount=o.amount,
                                         currency=o.currency, paid=True)) for o in orders),
                     key=lambda pair: pair[1].order_no)
    # when: they are confirmed as one batch
    with CaptureQueriesContext(connection) as queries, transaction.atomic():
        outcomes = [o.value for o in payments_decide(notices)]
    # then: all fulfilled; the bot orders' chats queued, the web orders' not; one read of the bot's table
    assert outcomes == ["fulfilled"] * 4
    chats = OutboxMessage.objects.filter(channel="telegram_chat").values_list("target", "payload")
    assert sorted(chats) == [("7001", {"order_id": orders[0].pk}), ("7003", {"order_id": orders[2].pk})]
    assert len([q for q in queries.captured_queries if "telegram_telegramorder" in q["sql"]]) == 1
