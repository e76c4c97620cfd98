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
