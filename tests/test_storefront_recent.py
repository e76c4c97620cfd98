"""This browser's recent orders: remembered in a signed HttpOnly cookie at checkout, listed at
/orders/recent (no-store), refused when tampered with, invisible to any other browser."""
from __future__ import annotations

import json
import re
from urllib.parse import unquote

import pytest
from django.http import HttpRequest, HttpResponse
from django.test import Client

from kami.orders.models import Order
from kami.storefront.recent import COOKIE, SALT
from tests.factories import add_keys
from tests.sandbox_play import enable_sandbox, sandbox_notify

pytestmark = pytest.mark.django_db


@pytest.fixture
def product(make_product, settings):
    settings.KAMI_PENDING_LIMIT_EMAIL = settings.KAMI_PENDING_LIMIT_IP = 0
    enable_sandbox()
    product = make_product("gift", name="Gift card", max_qty=5)
    add_keys(product, ["R-1"])
    return product


def buy(client: Client, email: str = "buyer@example.com"):
    response = client.post("/buy/gift", {"email": email, "quantity": "1", "gateway": "sandbox"})
    assert response.status_code == 302
    return response


def signed(value: str) -> str:
    """A cookie value signed by the server's own key, the way the checkout signs it."""
    response = HttpResponse()
    response.set_signed_cookie(COOKIE, value, salt=SALT)
    return response.cookies[COOKIE].value


def unsigned(client: Client) -> list:
    request = HttpRequest()
    request.COOKIES[COOKIE] = client.cookies[COOKIE].value
    return json.loads(request.get_signed_cookie(COOKIE, salt=SALT))


def listed(client: Client) -> list[str]:
    html = client.get("/orders/recent", HTTP_ACCEPT_LANGUAGE="en").content.decode()
    return re.findall(r'<a href="(/orders/\d+\?token=[^"]+)" class="mono">', html)


def test_an_order_bought_here_is_listed_with_a_link_that_opens_it(client, product):
    # when
    response = buy(client)
    # then the cookie is signed, HttpOnly and SameSite=Lax
    cookie = response.cookies[COOKIE]
    assert cookie["httponly"] and cookie["samesite"] == "Lax" and int(cookie["max-age"]) > 0
    order = Order.objects.get()
    page = client.get("/orders/recent", HTTP_ACCEPT_LANGUAGE="en")
    html = page.content.decode()
    assert page["Cache-Control"] == "no-store" and page["Referrer-Policy"] == "no-referrer"
    assert order.order_no in html and "Awaiting payment" in html and "Gift card × 1" in html
    assert "<script" not in html  # nothing on this page needs JavaScript
    [link] = listed(client)
    assert order.order_no in client.get(link.replace("&amp;", "&")).content.decode()


def test_the_nav_links_to_the_page_in_both_languages(client):
    assert ">My recent orders</a>" in client.get("/", HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert ">我最近的订单</a>" in client.get("/", HTTP_ACCEPT_LANGUAGE="zh-CN").content.decode()


def test_at_most_ten_are_kept_newest_first(client, product):
    for i in range(12):
        buy(client, email=f"b{i}@example.com")
    orders = list(Order.objects.order_by("-id").values_list("order_no", flat=True))
    links = listed(client)
    assert [re.search(r"/orders/(\d+)", link).group(1) for link in links] == orders[:10]


def test_another_browser_sees_nothing(client, product):
    buy(client)
    other = Client()
    html = other.get("/orders/recent", HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert listed(other) == [] and "No order has been placed in this browser yet." in html


def test_a_tampered_cookie_is_refused_whole(client, product):
    # given a real cookie for the buyer's order, and another buyer's order
    buy(client)
    stranger = Client()
    buy(stranger, email="stranger@example.com")
    theirs = Order.objects.get(email="stranger@example.com")
    value = client.cookies[COOKIE].value
    stranger_token = unsigned(stranger)[0][1]
    # when the cookie's content is edited to point at the stranger's order (signature kept)
    payload, _, signature = value.rpartition(":")
    forged = json.dumps([[theirs.order_no, stranger_token]], separators=(",", ":"))
    client.cookies[COOKIE] = f"{forged}:{signature}"
    # then the page shows nothing at all
    assert listed(client) == []
    # and garbage gets the same
    client.cookies[COOKIE] = "not-even-signed"
    assert listed(client) == []


def test_a_signed_entry_with_a_wrong_token_is_not_shown(client, product):
    # given a correctly signed cookie (a stale or copied one) whose token does not open the order
    buy(client)
    order = Order.objects.get()
    real_token = unsigned(client)[0][1]
    client.cookies[COOKIE] = signed(json.dumps([[order.order_no, "not-the-token"]]))
    # then
    assert listed(client) == []
    # while the same cookie with the real token lists it (the test signs as the server does)
    client.cookies[COOKIE] = signed(json.dumps([[order.order_no, real_token]]))
    assert len(listed(client)) == 1


def test_a_failed_checkout_remembers_nothing(client, product):
    response = client.post("/buy/gift", {"email": "not-an-email", "quantity": "1", "gateway": "sandbox"})
    assert response.status_code == 400 and COOKIE not in response.cookies


def test_the_gateway_gets_a_return_url_without_the_token_that_opens_the_order_only_here(client, product):
    # given an order bought here, whose cookie is set on the very redirect to the gateway
    response = buy(client)
    order = Order.objects.get()
    [(_, token)] = unsigned(client)
    back = unquote(re.search(r"return=([^&]+)", response["Location"]).group(1))
    assert token not in response["Location"] and back == f"http://testserver/orders/{order.order_no}/return"
    sandbox_notify(client, order_no=order.order_no, amount=str(order.amount))
    # when the buyer comes back, and someone who only saw the URL opens it too
    mine = client.get(back, HTTP_ACCEPT_LANGUAGE="en")
    theirs = Client().get(back, HTTP_ACCEPT_LANGUAGE="en")
    # then this browser sees its keys; the other a neutral page pointing to the lookup
    assert "R-1" in mine.content.decode() and mine["Cache-Control"] == "no-store"
    assert client.get(f"/orders/{order.order_no}/keys.txt").content == b"R-1\n"
    html = theirs.content.decode()
    assert theirs.status_code == 200 and theirs["Cache-Control"] == "no-store"
    assert "R-1" not in html and "Gift card" not in html and 'href="/lookup"' in html
    assert Client().get(f"/orders/{order.order_no}/keys.txt").status_code == 404


def test_paypal_s_own_token_on_the_return_url_does_not_hide_the_order(client, product):
    # given
    buy(client)
    order = Order.objects.get()
    # when PayPal appends its order id as `token=`
    page = client.get(f"/orders/{order.order_no}/return?token=5O190127TN364715T&PayerID=X", HTTP_ACCEPT_LANGUAGE="en")
    # then
    assert order.order_no in page.content.decode() and "Waiting for payment" in page.content.decode()
    assert client.get(f"/orders/{order.order_no}/status").json() == {"status": "pending"}


def test_the_return_page_reads_in_chinese(client, product):
    html = Client().get("/orders/1/return", HTTP_ACCEPT_LANGUAGE="zh-CN").content.decode()
    assert "支付完成返回" in html and "查询订单" in html
