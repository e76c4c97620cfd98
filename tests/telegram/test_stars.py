"""Telegram Stars: the invoice in XTR in the chat, the pre-checkout question answered after
checking the order, price and stock, the successful_payment update confirmed through the
gateways' one notification path (a duplicate changes nothing), refunds through refundStarPayment."""
from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest

from kami.core import clock
from kami.delivery.worker import run_once
from kami.fulfilment.refund import order_refund
from kami.orders.models import Order
from kami.payments.models import Notification, Payment
from kami.telegram.services import stars_set
from tests.factories import add_keys
from tests.telegram.bot_play import Buyer, paid_update, pre_checkout_update
from tests.telegram.conftest import TOKEN, post_update

pytestmark = pytest.mark.django_db(transaction=True)


def stars_order(client, bot, make_product, *, keys=("KEY-AAA-1",)) -> tuple[Order, dict]:
    """A buyer orders one key and chooses Stars; the order and the invoice the bot sent."""
    stars_set(rate="7", token=TOKEN, actor="test")
    product = make_product(name="Steam Wallet 100", price=Decimal("29.90"))
    add_keys(product, list(keys))
    buyer = Buyer(user_id=555)
    post_update(client, buyer.taps(f"q:{product.pk}:1"))
    post_update(client, buyer.says("tg@example.com"))
    assert ("Telegram Stars", "g:stars") in bot.buttons(555)
    post_update(client, buyer.taps("g:stars"))
    [invoice] = bot.called("sendInvoice")
    return Order.objects.get(telegram__user_id=555), invoice


def test_a_stars_purchase_from_invoice_to_keys(client, bot, make_product):
    # given: an order paid in Stars at 7 per CNY: 29.90 CNY is 210 Stars (rounded up)
    order, invoice = stars_order(client, bot, make_product)
    # then: the invoice is in XTR, for the order, at its price
    assert (invoice["chat_id"], invoice["currency"], invoice["provider_token"]) == ("555", "XTR", "")
    assert invoice["payload"] == f"{order.order_no}|29.90|CNY" and '"amount": 210' in invoice["prices"]
    # when: Telegram asks before charging
    post_update(client, pre_checkout_update(user_id=555, payload=invoice["payload"], total=210))
    # then
    [answer] = bot.called("answerPreCheckoutQuery")
    assert answer["ok"] == "true"
    # when: the payment arrives, twice (Telegram redelivers)
    paid = paid_update(user_id=555, payload=invoice["payload"], total=210, charge_id="stxCHARGE1")
    first, second = post_update(client, paid), post_update(client, dict(paid, update_id=paid["update_id"] + 1))
    run_once("w1")
    # then: confirmed once, keys in the chat
    assert (first.status_code, second.status_code) == (200, 200)
    order.refresh_from_db()
    assert order.status == "fulfilled"
    assert list(Payment.objects.values_list("gateway", "trade_no")) == [("stars", "555:stxCHARGE1")]
    assert sorted(Notification.objects.values_list("result", flat=True)) == ["duplicate", "fulfilled"]
    assert any("KEY-AAA-1" in t for t in bot.texts(555))


def test_pre_checkout_says_no_when_the_stock_is_gone_the_order_expired_or_the_price_differs(client, bot, make_product,
                                                                                             settings):
    # given
    order, invoice = stars_order(client, bot, make_product)
    ask = lambda total: post_update(client, pre_checkout_update(user_id=555, payload=invoice["payload"], total=total))  # noqa: E731
    # when: another number of Stars
    ask(100)
    # when: the stock is gone
    order.product.keys.update(status="void")
    ask(210)
    # when: the order expired
    clock.travel(timedelta(minutes=settings.KAMI_ORDER_TTL_MINUTES, seconds=settings.KAMI_PAYMENT_GRACE_SECONDS + 60))
    ask(210)
    # then
    answers = [(a["ok"], a["error_message"]) for a in bot.called("answerPreCheckoutQuery")]
    assert answers == [("false", "The price has changed: order again with /start."),
                       ("false", "Sold out: not enough stock for this quantity."),
                       ("false", "This order cannot be paid any more: order again with /start.")]


def test_a_payment_update_without_the_secret_is_refused(client, bot, make_product):
    # given
    order, invoice = stars_order(client, bot, make_product)
    # when
    response = post_update(client, paid_update(user_id=555, payload=invoice["payload"], total=210, charge_id="stxX"),
                           secret="guess")
    # then
    assert response.status_code == 403
    order.refresh_from_db()
    assert order.status == "pending" and not Payment.objects.exists()


def test_fewer_stars_than_the_price_are_flagged_not_fulfilled(client, bot, make_product):
    # given
    order, invoice = stars_order(client, bot, make_product)
    # when: a payment of 100 Stars for a 210-Star invoice
    post_update(client, paid_update(user_id=555, payload=invoice["payload"], total=100, charge_id="stxLOW"))
    # then
    order.refresh_from_db()
    assert (order.status, order.flag_reason) == ("flagged", "amount_mismatch")


def test_a_polled_payment_is_confirmed_and_a_refund_goes_through_refund_star_payment(bot, make_product, client):
    # given: the bot in polling mode, a Stars order paid while polling
    from django.core.management import call_command

    order, invoice = stars_order(client, bot, make_product)
    call_command("telegram", "set", "poll")
    bot.queue(paid_update(user_id=555, payload=invoice["payload"], total=210, charge_id="stxPOLL"))
    # when
    call_command("telegram", "poll", "--once")
    # then
    order.refresh_from_db()
    assert order.status == "fulfilled"
    # when: the merchant refunds it
    order_refund(order_no=order.order_no, reason="test", actor="test")
    # then
    [refund] = bot.called("refundStarPayment")
    assert refund == {"user_id": "555", "telegram_payment_charge_id": "stxPOLL"}
    order.refresh_from_db()
    assert order.status == "refunded"
