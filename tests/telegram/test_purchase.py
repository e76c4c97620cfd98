"""A whole purchase in the bot, in both languages: catalogue, product, quantity, email (or Skip),
gateway, payment link; the sandbox's signed notification confirms it; the real worker sends the
keys to the buyer's chat through the outbox (and by email only when the buyer gave one)."""
from __future__ import annotations

from decimal import Decimal

import pytest

from kami.delivery.models import OutboxMessage
from kami.delivery.worker import run_once
from kami.orders.models import Order
from tests.factories import add_keys
from tests.sandbox_play import enable_sandbox, sandbox_notify
from tests.telegram.bot_play import Buyer
from tests.telegram.conftest import post_update

pytestmark = pytest.mark.django_db(transaction=True)

WORDS = {
    "en": {"choose": "Choose a product:", "price": "Price: 29.90 CNY", "email": "Your keys arrive here in the chat.",
           "pay": "Choose how to pay:", "link": "Pay here: ", "keys": "Your keys:"},
    "zh-hans": {"choose": "请选择商品：", "price": "价格：29.90 CNY", "email": "卡密会发送到本会话。",
                "pay": "请选择支付方式：", "link": "付款链接：", "keys": "您的卡密："},
}


def buy(client, bot, buyer: Buyer, product, *, quantity: int = 2, email: str | None = "tg@example.com") -> Order:
    """Walk the buyer from /start to the payment link; the order made. email=None: the buyer taps Skip."""
    chat = buyer.user_id
    assert post_update(client, buyer.says("/start")).status_code == 200
    assert (product.name + " · 29.90 CNY", f"p:{product.pk}") in bot.buttons(chat)
    post_update(client, buyer.taps(f"p:{product.pk}"))
    post_update(client, buyer.taps(f"q:{product.pk}:{quantity}"))
    assert [d for _, d in bot.buttons(chat)] == ["e:skip"]
    post_update(client, buyer.says(email) if email is not None else buyer.taps("e:skip"))
    assert ("sandbox", "g:sandbox") in [(d.split(":")[1], d) for _, d in bot.buttons(chat)]
    post_update(client, buyer.taps("g:sandbox"))
    return Order.objects.filter(telegram__user_id=buyer.user_id, quantity=quantity).latest("id")


@pytest.mark.parametrize("language,code", [("en", "en"), ("zh-hans", "zh-CN")])
def test_a_whole_purchase_ends_with_the_keys_in_the_chat(client, bot, make_product, mailoutbox, language, code):
    # given: a product with three keys, the sandbox gateway on
    enable_sandbox()
    product = make_product(name="Steam Wallet 100", price=Decimal("29.90"), description="Global code.")
    add_keys(product, ["KEY-AAA-1", "KEY-BBB-2", "KEY-CCC-3"])
    buyer, words = Buyer(user_id=555, language=code), WORDS[language]
    # when: the buyer walks through the bot
    order = buy(client, bot, buyer, product)
    # then: every step answered in the buyer's language, and the order is the web's own kind
    texts = bot.texts(555)
    assert texts[0] == words["choose"]
    assert words["price"] in texts[1] and "Global code." in texts[1]
    assert texts[2].startswith(words["email"])
    assert texts[3] == words["pay"]
    assert order.order_no in texts[4] and words["link"] in texts[4] and "/sandbox/" in texts[4]
    assert (order.amount, order.email, order.locale, order.status) == (Decimal("59.80"), "tg@example.com", language, "pending")
    assert not any("KEY-" in t for t in texts)
    # when: the gateway confirms the payment and the worker runs
    assert sandbox_notify(client, order_no=order.order_no, amount="59.80").status_code == 200
    run_once("w1")
    # then: the keys were sent to the chat the order came from, through the outbox
    row = OutboxMessage.objects.get(dedupe_key=f"order_keys:{order.pk}:telegram_chat")
    assert (row.channel, row.target, row.status) == ("telegram_chat", "555", "sent")
    [delivered] = [p for p in bot.sent(555) if "KEY-" in p["text"]]
    assert words["keys"] in delivered["text"] and order.order_no in delivered["text"]
    assert delivered["text"].count("KEY-") == 2 and "KEY-CCC-3" not in delivered["text"]
    assert OutboxMessage.objects.get(dedupe_key=f"order_keys:{order.pk}:email").status == "sent"
    assert [m.to for m in mailoutbox] == [["tg@example.com"]] and "KEY-AAA-1" in mailoutbox[0].body
    assert "KEY-" not in row.last_error + str(row.payload)


@pytest.mark.parametrize("language,code", [("en", "en"), ("zh-hans", "zh-CN")])
def test_a_purchase_without_an_email_delivers_in_the_chat_only(client, bot, make_product, mailoutbox, language,
                                                              code):
    # given
    enable_sandbox()
    product = make_product(name="Steam Wallet 100", price=Decimal("29.90"))
    add_keys(product, ["KEY-AAA-1", "KEY-BBB-2"])
    buyer = Buyer(user_id=555, language=code)
    # when: the buyer taps Skip at the email step, pays, and the worker runs
    order = buy(client, bot, buyer, product, email=None)
    assert (order.email, order.status, order.telegram.chat_id) == ("", "pending", 555)
    assert WORDS[language]["link"] in bot.texts(555)[-1]
    assert sandbox_notify(client, order_no=order.order_no, amount="59.80").status_code == 200
    run_once("w1")
    # then: the keys reached the chat; no email row was queued and no mail was sent
    [delivered] = [p for p in bot.sent(555) if "KEY-" in p["text"]]
    assert "KEY-AAA-1" in delivered["text"] and "KEY-BBB-2" in delivered["text"]
    rows = OutboxMessage.objects.filter(dedupe_key__startswith=f"order_keys:{order.pk}:")
    assert [(r.channel, r.status) for r in rows] == [("telegram_chat", "sent")]
    assert mailoutbox == []
    assert Order.objects.get(pk=order.pk).status == "fulfilled"


def test_a_given_email_must_be_an_address(client, bot, make_product):
    # given: a buyer at the email step
    enable_sandbox()
    product = make_product(name="Steam Wallet 100")
    add_keys(product, ["KEY-AAA-1"])
    buyer = Buyer(user_id=555)
    post_update(client, buyer.taps(f"q:{product.pk}:1"))
    # when
    post_update(client, buyer.says("not-an-email"))
    post_update(client, buyer.taps("g:sandbox"))
    # then: asked again; choosing a gateway without the email step done makes no order
    assert bot.texts(555)[1].startswith("That is not an email address.")
    assert bot.texts(555)[2] == "Choose a product:"
    assert not Order.objects.exists()


def test_orders_lists_the_buyers_orders_and_shows_their_keys_again(client, bot, make_product):
    # given: a fulfilled order made in the bot
    enable_sandbox()
    product = make_product(name="Steam Wallet 100")
    add_keys(product, ["KEY-AAA-1"])
    buyer = Buyer(user_id=555)
    order = buy(client, bot, buyer, product, quantity=1)
    sandbox_notify(client, order_no=order.order_no, amount="29.90")
    # when
    post_update(client, buyer.says("/orders"))
    # then
    assert f"{order.order_no} · Steam Wallet 100 × 1 · Fulfilled" in bot.texts(555)[-1]
    assert (f"Keys of {order.order_no}", f"o:{order.order_no}") in bot.buttons(555)
    # when
    post_update(client, buyer.taps(f"o:{order.order_no}"))
    # then
    assert "KEY-AAA-1" in bot.texts(555)[-1]


def test_a_second_telegram_user_cannot_see_the_first_ones_order(client, bot, make_product):
    # given: user 555's fulfilled order
    enable_sandbox()
    product = make_product(name="Steam Wallet 100")
    add_keys(product, ["KEY-AAA-1"])
    order = buy(client, bot, Buyer(user_id=555), product, quantity=1)
    sandbox_notify(client, order_no=order.order_no, amount="29.90")
    run_once("w1")
    intruder = Buyer(user_id=666)
    # when: user 666 asks for the order by number, and lists their orders
    post_update(client, intruder.taps(f"o:{order.order_no}"))
    post_update(client, intruder.says("/orders"))
    # then: nothing of it reaches them
    texts = bot.texts(666)
    assert texts[0] == "No such order."
    assert texts[1].startswith("You have no orders yet.")
    assert not any(order.order_no in t or "KEY-AAA-1" in t for t in texts)
    assert [p for p in bot.sent(666) if "KEY-" in str(p)] == []
