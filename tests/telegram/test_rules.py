"""The web's rules hold in the bot: sold out, payment after expiry, one handling per update, and
the keys delivery's retries and escalation when the Bot API is down."""
from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest

from kami.core import clock
from kami.delivery.models import OutboxMessage
from kami.delivery.worker import run_once
from kami.orders.models import Order
from tests.factories import add_keys
from tests.sandbox_play import enable_sandbox, sandbox_notify
from tests.telegram.bot_play import Buyer
from tests.telegram.conftest import post_update
from tests.telegram.test_purchase import buy

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_sold_out_product_offers_no_quantity(client, bot, make_product):
    # given
    product = make_product(name="Steam Wallet 100")
    # when
    post_update(client, Buyer(user_id=555, language="zh-hans").taps(f"p:{product.pk}"))
    # then
    [text] = bot.texts(555)
    assert "已售罄。" in text and bot.buttons(555) == []


def test_stock_gone_before_the_gateway_is_chosen_is_sold_out_and_no_order(client, bot, make_product):
    # given: the buyer chose 2 of 2 keys, then one was sold elsewhere
    enable_sandbox()
    product = make_product(name="Steam Wallet 100")
    keys = add_keys(product, ["KEY-1", "KEY-2"])
    buyer = Buyer(user_id=555)
    post_update(client, buyer.taps(f"q:{product.pk}:2"))
    post_update(client, buyer.says("tg@example.com"))
    keys[0].status = "void"
    keys[0].save(update_fields=["status"])
    # when
    post_update(client, buyer.taps("g:sandbox"))
    # then
    assert bot.texts(555)[-1] == "Sold out: not enough stock for this quantity."
    assert Order.objects.count() == 0


def test_payment_after_expiry_is_flagged_and_no_key_reaches_the_chat(client, bot, make_product, settings):
    # given: an order made in the bot, left unpaid past its TTL and the grace
    enable_sandbox()
    product = make_product(name="Steam Wallet 100", price=Decimal("29.90"))
    add_keys(product, ["KEY-AAA-1"])
    order = buy(client, bot, Buyer(user_id=555), product, quantity=1)
    clock.travel(timedelta(minutes=settings.KAMI_ORDER_TTL_MINUTES) + timedelta(seconds=settings.KAMI_PAYMENT_GRACE_SECONDS + 60))
    # when
    sandbox_notify(client, order_no=order.order_no, amount="29.90")
    run_once("w1")
    # then
    order.refresh_from_db()
    assert order.status == "flagged"
    assert not OutboxMessage.objects.filter(kind="order_keys").exists()
    assert not any("KEY-AAA-1" in t for t in bot.texts(555))


def test_a_redelivered_update_is_handled_once(client, bot):
    # given
    update = Buyer(user_id=555).says("/start")
    # when: Telegram posts the same update twice
    post_update(client, update)
    post_update(client, update)
    # then
    assert len(bot.texts(555)) == 1


def test_the_api_down_retries_the_keys_then_escalates_to_a_person(client, bot, make_product, settings):
    # given: a paid bot order, and the Bot API answering 502
    settings.KAMI_DELIVERY_BACKOFF = [10]
    enable_sandbox()
    product = make_product(name="Steam Wallet 100")
    add_keys(product, ["KEY-AAA-1"])
    order = buy(client, bot, Buyer(user_id=555), product, quantity=1)
    sandbox_notify(client, order_no=order.order_no, amount="29.90")
    bot.fail_with = 502
    # when: the first attempt fails
    run_once("w1")
    # then: it is scheduled again
    row = OutboxMessage.objects.get(dedupe_key=f"order_keys:{order.pk}:telegram_chat")
    assert (row.status, row.attempts) == ("failed", 1)
    assert "502" in row.last_error and "KEY-AAA-1" not in row.last_error and "bot-token" not in row.last_error
    # when: the retry fails too
    clock.travel(timedelta(seconds=11))
    run_once("w1")
    # then: a person is told
    row.refresh_from_db()
    assert (row.status, row.attempts) == ("manual", 2)
    alert = OutboxMessage.objects.get(kind="admin_alert", dedupe_key=f"alert:delivery_manual:{row.pk}:email")
    assert order.order_no in alert.payload["subject"]
    # when: the API is back and staff retry it
    bot.fail_with = None
    from kami.delivery.services import delivery_retry_now
    delivery_retry_now(message_id=row.pk, actor="staff")
    run_once("w1")
    # then
    row.refresh_from_db()
    assert row.status == "sent" and any("KEY-AAA-1" in t for t in bot.texts(555))


def test_unpaid_orders_are_limited_per_telegram_user_with_or_without_an_email(client, bot, make_product, settings):
    # given: the web's per-email limit at 2, and user 555 with two unpaid orders, one without an email
    settings.KAMI_PENDING_LIMIT_EMAIL, settings.KAMI_PENDING_LIMIT_IP = 2, 100
    enable_sandbox()
    product = make_product(name="Steam Wallet 100")
    add_keys(product, ["KEY-1", "KEY-2", "KEY-3", "KEY-4"])
    first, second = Buyer(user_id=555), Buyer(user_id=666)
    buy(client, bot, first, product, quantity=1, email=None)
    buy(client, bot, first, product, quantity=1, email="a@example.com")
    # when: the same user tries a third, without an email and with an address not used before
    for step in (first.taps(f"q:{product.pk}:1"), first.taps("e:skip"), first.taps("g:sandbox"),
                 first.taps(f"q:{product.pk}:1"), first.says("fresh@example.com"), first.taps("g:sandbox")):
        post_update(client, step)
    # then: both refused, in the buyer's words
    refusals = [t for t in bot.texts(555) if t.startswith("Too many unpaid orders")]
    assert len(refusals) == 2 and Order.objects.filter(telegram__user_id=555).count() == 2
    # when: another Telegram user buys without an email
    other = buy(client, bot, second, product, quantity=1, email=None)
    # then: their limit is their own
    assert (other.email, other.telegram.user_id) == ("", 666)
    # when: one of the first user's orders is paid
    paid = Order.objects.filter(telegram__user_id=555).order_by("id").first()
    assert sandbox_notify(client, order_no=paid.order_no, amount=str(paid.amount)).status_code == 200
    # then: the place is free again
    assert buy(client, bot, first, product, quantity=1, email=None).status == "pending"
