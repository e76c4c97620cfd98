"""The buyer pages speak zh-hans (the default) and en, chosen from the browser."""
from __future__ import annotations

import pytest

pytestmark = pytest.mark.django_db


def test_home_in_chinese_by_default_and_english_on_request(client, make_product):
    make_product(name="Gift card")
    assert "暂无在售商品" not in client.get("/").content.decode()
    zh = client.get("/", HTTP_ACCEPT_LANGUAGE="zh-CN").content.decode()
    en = client.get("/", HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert "已售罄" in zh and "Sold out" in en


def test_order_page_opens_with_the_email_link_and_not_with_a_forged_one(client, make_product):
    from kami.delivery.links import order_link_signature
    from tests.factories import add_keys, make_orders

    product = make_product()
    add_keys(product, ["PAGE-KEY-1"])
    (order,) = make_orders(product, [1])
    good = client.get(f"/orders/{order.order_no}?sig={order_link_signature(order.order_no)}")
    forged = client.get(f"/orders/{order.order_no}?sig=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")
    bare = client.get(f"/orders/{order.order_no}")
    assert good.status_code == 200 and order.order_no in good.content.decode()
    assert forged.status_code == bare.status_code == 404
    assert good["Cache-Control"] == "no-store" and good["Referrer-Policy"] == "no-referrer"


def test_pages_carry_a_strict_content_security_policy(client):
    response = client.get("/")
    policy = response["Content-Security-Policy"]
    assert "script-src 'self'" in policy and "unsafe-inline" not in policy and "frame-ancestors 'none'" in policy
    assert response["X-Frame-Options"] == "DENY" and response["X-Content-Type-Options"] == "nosniff"
