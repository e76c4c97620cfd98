"""The buyer pages speak zh-hans (the default) and en, chosen from the browser."""
from __future__ import annotations

import pytest

pytestmark = [pytest.mark.django_db, pytest.mark.sqlite_only]  # language negotiation and templates: the same on every engine


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


def test_the_language_switcher_changes_the_page_language(client):
    page = client.post("/i18n/setlang/", {"language": "en", "next": "/"}, follow=True)
    assert page.status_code == 200 and "Automatic delivery" in page.content.decode()
    back = client.post("/i18n/setlang/", {"language": "zh-hans", "next": "https://evil.example/"})
    assert back["Location"] == "/"  # never sent off-site


def test_keys_download_as_a_text_file_with_the_same_access_rule(client, make_product):
    from kami.delivery.links import order_link_signature
    from tests.factories import add_keys, make_orders
    from tests.sandbox_play import enable_sandbox, sandbox_notify

    enable_sandbox()
    product = make_product()
    add_keys(product, ["TXT-1", "TXT-2"])
    (order,) = make_orders(product, [2])
    sandbox_notify(client, order_no=order.order_no, amount=str(order.amount))
    sig = order_link_signature(order.order_no)
    page = client.get(f"/orders/{order.order_no}?sig={sig}").content.decode()
    assert f"/orders/{order.order_no}/keys.txt?sig={sig}" in page
    download = client.get(f"/orders/{order.order_no}/keys.txt?sig={sig}")
    assert download.content == b"TXT-1\nTXT-2\n" and "attachment" in download["Content-Disposition"]
    assert download["Cache-Control"] == "no-store"
    assert client.get(f"/orders/{order.order_no}/keys.txt").status_code == 404
