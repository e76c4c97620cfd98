"""The optional captcha (KAMI_CAPTCHA=1) on the buy form and the lookup page: off by default;
when on, a missing or wrong answer creates nothing and sends the form back with the buyer's
input; the right answer (read from the captcha's own store, as the server knows it) goes through."""
from __future__ import annotations

import re

import pytest
from captcha.models import CaptchaStore
from django.core.cache import cache

from kami.orders.models import Order
from tests.factories import add_keys
from tests.sandbox_play import enable_sandbox

pytestmark = pytest.mark.django_db


@pytest.fixture
def captcha_on(settings):
    settings.KAMI_CAPTCHA = True
    cache.clear()  # lookup rate limits


@pytest.fixture
def product(make_product):
    enable_sandbox()
    product = make_product("gift", name="Gift card", max_qty=5)
    add_keys(product, ["C-1", "C-2", "C-3"])
    return product


def challenge(html: str) -> tuple[str, str]:
    """The challenge key in a page, and its answer from the store."""
    key = re.search(r'name="captcha_key" value="([0-9a-f]+)"', html).group(1)
    return key, CaptchaStore.objects.get(hashkey=key).response


BUY = {"email": "buyer@example.com", "quantity": "2", "gateway": "sandbox"}


def test_off_by_default_the_forms_have_no_captcha_and_buying_works(client, product):
    assert "captcha" not in client.get("/p/gift").content.decode()
    assert "captcha" not in client.get("/lookup").content.decode()
    assert 'action="/buy/gift"' in client.get("/").content.decode()  # the home page's quick buy form
    assert client.post("/buy/gift", BUY).status_code == 302
    assert Order.objects.count() == 1 and not CaptchaStore.objects.exists()


@pytest.mark.parametrize("answer", ["", "wrong"])
def test_a_missing_or_wrong_answer_creates_nothing_and_keeps_the_input(client, product, captcha_on, answer):
    # given the product page with its challenge
    key, _ = challenge(client.get("/p/gift", HTTP_ACCEPT_LANGUAGE="en").content.decode())
    # when the buyer sends the form with a wrong answer (or none)
    page = client.post("/buy/gift", {**BUY, "captcha_key": key, "captcha": answer}, HTTP_ACCEPT_LANGUAGE="en")
    # then nothing is created, the message is translated, and the form comes back filled in
    html = page.content.decode()
    assert page.status_code == 400 and Order.objects.count() == 0
    assert "do not match the picture" in html and 'value="buyer@example.com"' in html and 'value="2"' in html
    assert challenge(html)[0] != key  # a fresh challenge; the old one is spent
    assert not CaptchaStore.objects.filter(hashkey=key).exists()
    zh = client.post("/buy/gift", {**BUY, "captcha_key": key, "captcha": "nope"}, HTTP_ACCEPT_LANGUAGE="zh-CN")
    assert "您输入的字符与图片不符" in zh.content.decode()


def test_the_right_answer_buys_once_and_cannot_be_replayed(client, product, captcha_on):
    # given
    key, answer = challenge(client.get("/p/gift").content.decode())
    # when
    first = client.post("/buy/gift", {**BUY, "captcha_key": key, "captcha": answer.upper()})
    replay = client.post("/buy/gift", {**BUY, "captcha_key": key, "captcha": answer})
    # then
    assert first.status_code == 302 and replay.status_code == 400
    assert Order.objects.count() == 1


def test_with_the_captcha_on_the_home_page_links_to_the_product_page(client, product, captcha_on):
    html = client.get("/").content.decode()
    assert 'action="/buy/gift"' not in html and 'class="button" href="/p/gift"' in html
    assert not CaptchaStore.objects.exists()  # no challenge drawn for a page without a form


def test_the_captcha_picture_is_a_png_from_this_server(client, product, captcha_on):
    # given
    html = client.get("/p/gift").content.decode()
    src = re.search(r'<img src="(/captcha/image/[0-9a-f]+/)"', html).group(1)
    # when
    picture = client.get(src)
    # then it loads under the page's policy (img-src 'self')
    assert picture.status_code == 200 and picture["Content-Type"] == "image/png"
    assert picture.content.startswith(b"\x89PNG")
    assert "img-src 'self' data:" in client.get("/p/gift")["Content-Security-Policy"]


def test_lookup_with_a_wrong_answer_finds_nothing_and_keeps_the_input(client, product, captcha_on):
    # given a real order, so a right answer would redirect to it
    bought_key, answer = challenge(client.get("/p/gift").content.decode())
    client.post("/buy/gift", {**BUY, "captcha_key": bought_key, "captcha": answer})
    order = Order.objects.get()
    key, _ = challenge(client.get("/lookup").content.decode())
    # when
    page = client.post("/lookup", {"order_no": order.order_no, "email": order.email, "captcha_key": key,
                                   "captcha": "wrong"}, HTTP_ACCEPT_LANGUAGE="en")
    # then
    html = page.content.decode()
    assert page.status_code == 400 and page["Cache-Control"] == "no-store"
    assert "do not match the picture" in html and order.order_no in html and 'value="buyer@example.com"' in html
    assert "/orders/" + order.order_no not in html


def test_lookup_with_the_right_answer_sends_the_order_link(client, product, captcha_on):
    from kami.delivery.models import OutboxMessage

    key, answer = challenge(client.get("/p/gift").content.decode())
    client.post("/buy/gift", {**BUY, "captcha_key": key, "captcha": answer})
    order = Order.objects.get()
    key, answer = challenge(client.get("/lookup").content.decode())
    found = client.post("/lookup", {"order_no": order.order_no, "email": order.email, "captcha_key": key,
                                    "captcha": answer})
    assert found.status_code == 200 and "/orders/" + order.order_no not in found.content.decode()
    assert OutboxMessage.objects.filter(kind="order_link", target=order.email).count() == 1


def test_lookup_without_the_captcha_needs_no_answer(client, product):
    key_free = client.post("/lookup", {"email": "nobody@example.com", "password": "xxxxxxxx"})
    assert key_free.status_code == 200


def test_drawing_a_challenge_drops_the_expired_ones(client, product, captcha_on):
    from datetime import timedelta

    from django.utils import timezone

    CaptchaStore.objects.create(challenge="OLD", response="old", expiration=timezone.now() - timedelta(minutes=1))
    client.get("/p/gift")
    assert not CaptchaStore.objects.filter(challenge="OLD").exists() and CaptchaStore.objects.count() == 1
