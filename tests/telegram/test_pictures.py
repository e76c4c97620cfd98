"""Product pictures in the bot: a product with a picture is shown with sendPhoto (its page-size
picture uploaded as JPEG, the product's text as the caption, the quantity buttons under it);
without one, or when the picture cannot be sent, as a message."""
from __future__ import annotations

import io
import json

import pytest
from PIL import Image

from kami.catalog.pictures import picture_storage, product_picture_set
from kami.telegram.pictures import units
from tests.catalog.picture_files import photo_with_gps, png
from tests.factories import add_keys
from tests.telegram.bot_play import Buyer
from tests.telegram.conftest import post_update

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def pictures_dir(settings, tmp_path):
    settings.STORAGES = {**settings.STORAGES, "kami_pictures": {
        "BACKEND": "django.core.files.storage.FileSystemStorage", "OPTIONS": {"location": str(tmp_path)}}}
    return tmp_path


def on_sale(make_product, *, picture: bytes | None, description: str = "Global code."):
    product = make_product(name="Steam Wallet 100", description=description)
    add_keys(product, ["KEY-1", "KEY-2"])
    if picture is not None:
        product = product_picture_set(product=product, source=picture, actor="test")
    return product


def test_a_product_with_a_picture_is_shown_as_a_photo_with_its_text(client, bot, make_product, pictures_dir):
    # given: a product whose picture was uploaded at 1600×1200
    product = on_sale(make_product, picture=photo_with_gps(rotated=False))
    # when
    post_update(client, Buyer(user_id=555, language="zh-CN").taps(f"p:{product.pk}"))
    # then: one photo, the page-size picture as a JPEG, the product's text as its caption
    assert bot.called("sendMessage") == []
    [photo] = bot.called("sendPhoto")
    image = Image.open(io.BytesIO(photo["photo"]))
    assert (image.format, image.size) == ("JPEG", (1200, 900))
    assert photo["chat_id"] == "555"
    assert photo["caption"].startswith("Steam Wallet 100\n价格：")
    assert "Global code." in photo["caption"] and photo["caption"].endswith("购买数量？")
    assert [b["callback_data"] for b in json.loads(photo["reply_markup"])["inline_keyboard"][0]] == \
        [f"q:{product.pk}:1", f"q:{product.pk}:2"]


def test_a_transparent_picture_is_laid_on_white(client, bot, make_product, pictures_dir):
    # given
    product = on_sale(make_product, picture=png((300, 200), mode="RGBA", colour=(0, 0, 0, 0)))
    # when
    post_update(client, Buyer(user_id=555).taps(f"p:{product.pk}"))
    # then
    [photo] = bot.called("sendPhoto")
    assert Image.open(io.BytesIO(photo["photo"])).convert("RGB").getpixel((150, 100)) >= (250, 250, 250)


def test_a_long_description_is_shortened_to_fit_the_caption(client, bot, make_product, pictures_dir):
    # given: a description longer than a caption may be (1,024), with emoji (two UTF-16 units each)
    product = on_sale(make_product, picture=photo_with_gps(rotated=False), description="🎮 Global code. " * 100)
    # when
    post_update(client, Buyer(user_id=555).taps(f"p:{product.pk}"))
    # then: the caption fits, and still ends with the question above the buttons
    [photo] = bot.called("sendPhoto")
    assert 1000 < units(photo["caption"]) <= 1024
    assert "…" in photo["caption"] and photo["caption"].endswith("How many?")


def test_without_a_picture_the_product_is_a_message(client, bot, make_product, pictures_dir):
    # given
    product = on_sale(make_product, picture=None)
    # when
    post_update(client, Buyer(user_id=555).taps(f"p:{product.pk}"))
    # then
    assert bot.called("sendPhoto") == []
    [message] = bot.called("sendMessage")
    assert "Global code." in message["text"] and message["text"].endswith("How many?")


@pytest.mark.parametrize("trouble", ["file gone", "photo refused"])
def test_a_picture_that_cannot_be_sent_falls_back_to_the_message(client, bot, make_product, pictures_dir, trouble):
    # given: the picture's file deleted from the storage, or Telegram refusing the photo
    product = on_sale(make_product, picture=photo_with_gps(rotated=False))
    if trouble == "file gone":
        picture_storage().delete(product.picture_page)
    else:
        bot.refuse["sendPhoto"] = 400
    # when
    post_update(client, Buyer(user_id=555).taps(f"p:{product.pk}"))
    # then: the buyer still gets the product, with its buttons
    [message] = bot.called("sendMessage")
    assert message["text"].startswith("Steam Wallet 100\n") and message["text"].endswith("How many?")
    assert json.loads(message["reply_markup"])["inline_keyboard"]
    assert len(bot.called("sendPhoto")) == (0 if trouble == "file gone" else 1)


def test_the_second_view_sends_telegrams_file_id_not_the_picture_again(client, bot, make_product, pictures_dir):
    # given: a product with a picture, viewed once (uploaded)
    product = on_sale(make_product, picture=photo_with_gps(rotated=False))
    post_update(client, Buyer(user_id=555).taps(f"p:{product.pk}"))
    # when: another buyer, then the first again, view it
    post_update(client, Buyer(user_id=556).taps(f"p:{product.pk}"))
    post_update(client, Buyer(user_id=555).taps(f"p:{product.pk}"))
    # then: one upload; the later views name the largest size's id, with the same caption and buttons
    first, second, third = bot.called("sendPhoto")
    assert isinstance(first["photo"], bytes) and second["photo"] == third["photo"] == bot.file_ids[0]
    assert second["caption"] == first["caption"] and second["reply_markup"] == first["reply_markup"]


def test_a_file_id_telegram_refuses_is_forgotten_and_the_picture_uploaded_again(client, bot, make_product,
                                                                                pictures_dir):
    # given: a picture uploaded by the shop's bot, whose ids Telegram then no longer knows
    # (a new bot token, or a file Telegram dropped)
    product = on_sale(make_product, picture=photo_with_gps(rotated=False))
    post_update(client, Buyer(user_id=555).taps(f"p:{product.pk}"))
    stale = bot.file_ids.pop()
    # when
    post_update(client, Buyer(user_id=555).taps(f"p:{product.pk}"))
    post_update(client, Buyer(user_id=555).taps(f"p:{product.pk}"))
    # then: the stale id was tried once, the picture uploaded again, and its new id used after
    ids = [p["photo"] if isinstance(p["photo"], str) else "upload" for p in bot.called("sendPhoto")]
    assert ids == ["upload", stale, "upload", bot.file_ids[0]]
    assert bot.called("sendMessage") == []


def test_a_new_picture_is_uploaded_not_the_old_ones_id(client, bot, make_product, pictures_dir):
    # given: a product viewed with one picture
    product = on_sale(make_product, picture=photo_with_gps(rotated=False))
    post_update(client, Buyer(user_id=555).taps(f"p:{product.pk}"))
    # when: the merchant replaces the picture, and the product is viewed again
    product_picture_set(product=product, source=png((300, 200)), actor="test")
    post_update(client, Buyer(user_id=555).taps(f"p:{product.pk}"))
    # then: the new picture went up
    first, second = bot.called("sendPhoto")
    assert isinstance(second["photo"], bytes) and Image.open(io.BytesIO(second["photo"])).size == (300, 200)
