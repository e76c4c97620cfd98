"""A product that asks the buyer for details (a game account, a server…) sells in the bot too: each
field is asked in turn, checked by the web's own rule, an optional one can be skipped, and the
answers are kept on the order exactly as a web checkout keeps them."""
from __future__ import annotations

import pytest

from kami.catalog.custom_fields import product_custom_fields_set
from kami.orders.models import Order
from tests.factories import add_keys
from tests.sandbox_play import enable_sandbox
from tests.telegram.bot_play import Buyer
from tests.telegram.conftest import post_update

pytestmark = pytest.mark.django_db(transaction=True)

FIELDS = [{"name": "game_id", "label": "Game ID", "required": True, "max_length": 12},
          {"name": "server", "label": "Server", "required": False, "max_length": 20}]


def product_with_fields(make_product):
    enable_sandbox()
    product = make_product(name="Game top-up")
    add_keys(product, ["KEY-1", "KEY-2"])
    return product_custom_fields_set(product=product, fields=FIELDS, actor="test")


def test_each_field_is_asked_checked_and_kept_on_the_order(client, bot, make_product):
    # given
    product, buyer = product_with_fields(make_product), Buyer(user_id=555)
    # when: the buyer picks a quantity, answers the first field badly, then well, skips the second
    post_update(client, buyer.taps(f"p:{product.pk}"))
    assert (("1", f"q:{product.pk}:1") in bot.buttons(555)), bot.texts(555)
    post_update(client, buyer.taps(f"q:{product.pk}:1"))
    asked_id = bot.texts(555)[-1]
    post_update(client, buyer.says("x" * 13))
    too_long = bot.texts(555)[-2:]
    post_update(client, buyer.says("  PLAYER-42  "))
    asked_server, server_buttons = bot.texts(555)[-1], bot.buttons(555)
    post_update(client, buyer.taps("f:skip"))
    post_update(client, buyer.taps("e:skip"))
    post_update(client, buyer.taps("g:sandbox"))
    # then: each question named its field and limit; the bad answer was refused and asked again
    assert "Game ID" in asked_id and "12" in asked_id
    assert too_long[0] == "Game ID: at most 12 characters." and "Game ID" in too_long[1]
    assert "Server" in asked_server and [d for _, d in server_buttons] == ["f:skip"]
    # and the order carries the checked answers, as a web checkout stores them
    order = Order.objects.get(telegram__user_id=555)
    assert (order.custom_values, order.status, order.email) == ({"game_id": "PLAYER-42"}, "pending", "")


def test_a_required_field_cannot_be_skipped_nor_the_gateway_chosen_before_it(client, bot, make_product):
    # given: the first field is being asked, in the buyer's language
    product, buyer = product_with_fields(make_product), Buyer(user_id=556, language="zh-CN")
    post_update(client, buyer.taps(f"q:{product.pk}:1"))
    # when: the buyer taps Skip (an old button) and then a gateway without answering
    post_update(client, buyer.taps("f:skip"))
    asked_again = bot.texts(556)[-1]
    post_update(client, buyer.taps("g:sandbox"))
    # then: the field is asked again, and no order was made
    assert asked_again == "请发送Game ID（一行，最多 12 个字符）。"
    assert not Order.objects.filter(telegram__user_id=556).exists()


def test_fields_changed_while_the_buyer_answered_refuse_the_order_in_words(client, bot, make_product):
    # given: a buyer answered every field of the product as it was
    product, buyer = product_with_fields(make_product), Buyer(user_id=557)
    post_update(client, buyer.taps(f"q:{product.pk}:1"))
    post_update(client, buyer.says("PLAYER-1"))
    post_update(client, buyer.says("eu-1"))
    post_update(client, buyer.taps("e:skip"))
    # when: the merchant adds a required field, then the buyer chooses the gateway
    product_custom_fields_set(product=product, fields=[*FIELDS, {"name": "realm", "label": "Realm"}], actor="test")
    post_update(client, buyer.taps("g:sandbox"))
    # then: a plain refusal, and no order
    assert bot.texts(557)[-1] == "This product now asks for other details: choose it again with /start."
    assert not Order.objects.filter(telegram__user_id=557).exists()
