"""The product page, the home catalogue and the stock JSON the product page polls."""
from __future__ import annotations

from decimal import Decimal

import pytest

from kami.catalog.models import Category, Product
from kami.catalog.services import tier_price_set
from tests.factories import add_keys
from tests.sandbox_play import enable_sandbox

pytestmark = pytest.mark.django_db


def html(response) -> str:
    return response.content.decode()


def test_product_page_shows_price_tiers_and_a_buy_form(client, make_product):
    # given a product with a tier and stock
    enable_sandbox()
    product = make_product("gift", name="Gift card", price=Decimal("10.00"), min_qty=1, max_qty=5)
    tier_price_set(product=product, min_quantity=3, unit_price=Decimal("8.80"))
    add_keys(product, ["PP-1", "PP-2"])
    # when
    page = html(client.get("/p/gift", HTTP_ACCEPT_LANGUAGE="en"))
    # then
    assert "Gift card" in page and "CN¥10.00" in page and "CN¥8.80" in page and "3+" in page
    assert 'action="/buy/gift"' in page and 'min="1" max="5"' in page
    assert 'name="lookup_password"' in page and 'autocomplete="new-password"' in page
    assert 'value="sandbox"' in page
    assert "Only 2 left" in page
    assert '<button type="submit">' in page  # enabled


def test_markdown_is_rendered_and_sanitised(client, make_product):
    # given a description with formatting and three kinds of attack
    make_product("md", description=(
        "**bold** and [site](https://example.com)\n\n"
        "<script>alert(1)</script>\n\n"
        '<img src="https://evil.example/x.png" onerror="alert(2)">\n\n'
        "[click](javascript:alert(3))"))
    # when
    page = html(client.get("/p/md"))
    # then the formatting survives and the attacks do not
    assert "<strong>bold</strong>" in page
    assert '<a href="https://example.com" rel="noopener nofollow">site</a>' in page
    assert "alert(1)" not in page and "<script>alert" not in page
    assert "onerror" not in page and "evil.example" not in page
    assert "javascript:" not in page


def test_sold_out_product_page_disables_the_button(client, make_product):
    # given a product without keys
    enable_sandbox()
    make_product("empty")
    # when
    page = html(client.get("/p/empty", HTTP_ACCEPT_LANGUAGE="en"))
    # then
    assert '<button type="submit" disabled>' in page
    assert 'id="soldout-note">Sold out' in page


def test_inactive_or_unknown_product_is_404(client, make_product):
    # given
    product = make_product("gone")
    product.active = False
    product.save(update_fields=["active"])
    # when / then
    assert client.get("/p/gone").status_code == 404
    assert client.get("/p/nothing").status_code == 404
    assert client.get("/p/gone/stock").status_code == 404


def test_stock_json_reports_low_stock_counts_only(client, make_product):
    # given three products: empty, low, plenty
    make_product("none")
    add_keys(make_product("low"), ["L-1", "L-2", "L-3"])
    add_keys(make_product("lots"), [f"M-{i}" for i in range(12)])
    # when
    responses = {slug: client.get(f"/p/{slug}/stock") for slug in ("none", "low", "lots")}
    # then
    assert responses["none"].json() == {"available": False, "left": 0}
    assert responses["low"].json() == {"available": True, "left": 3}
    assert responses["lots"].json() == {"available": True, "left": None}
    assert responses["low"]["Cache-Control"] == "no-store"


def test_stock_json_uses_the_products_low_stock_threshold(client, make_product):
    # given a product that alerts below 20, with 15 keys
    add_keys(make_product("big", low_stock=20), [f"B-{i}" for i in range(15)])
    # when / then
    assert client.get("/p/big/stock").json() == {"available": True, "left": 15}


def test_home_links_cards_to_product_pages_with_badges(client, make_product):
    # given
    add_keys(make_product("few", name="Few keys"), ["F-1"])
    add_keys(make_product("many", name="Many keys"), [f"N-{i}" for i in range(10)])
    make_product("out", name="No keys")
    # when
    page = html(client.get("/", HTTP_ACCEPT_LANGUAGE="en"))
    # then
    assert 'href="/p/few"' in page and 'href="/p/many"' in page
    assert "Only 1 left" in page and "In stock" in page and "Sold out" in page


def test_home_shows_the_tier_price_at_the_minimum_quantity(client, make_product):
    # given a product sold from 2 at a time, with a tier from 2
    product = make_product("duo", price=Decimal("10.00"), min_qty=2)
    tier_price_set(product=product, min_quantity=2, unit_price=Decimal("7.50"))
    # when / then
    assert "¥7.50" in html(client.get("/"))  # zh-hans, the default, writes CNY as ¥


def test_search_filters_by_name_case_insensitively(client, make_product):
    # given
    make_product("steam", name="Steam Wallet 50")
    make_product("apple", name="Apple Gift Card")
    # when
    found = html(client.get("/?q=sTEAM", HTTP_ACCEPT_LANGUAGE="en"))
    nothing = html(client.get("/?q=xbox", HTTP_ACCEPT_LANGUAGE="en"))
    # then
    assert "Steam Wallet 50" in found and "Apple Gift Card" not in found
    assert "No product matches your search." in nothing


def test_category_filter_appears_and_filters(client, make_product):
    # given two categories
    games = Category.objects.create(slug="games", name="Games")
    music = Category.objects.create(slug="music", name="Music")
    Product.objects.filter(pk=make_product("g1", name="Game key").pk).update(category=games)
    Product.objects.filter(pk=make_product("m1", name="Music key").pk).update(category=music)
    # when
    everything = html(client.get("/", HTTP_ACCEPT_LANGUAGE="en"))
    games_only = html(client.get("/?category=games", HTTP_ACCEPT_LANGUAGE="en"))
    # then
    assert 'href="/?category=games"' in everything and "Game key" in everything and "Music key" in everything
    assert "Game key" in games_only and "Music key" not in games_only
