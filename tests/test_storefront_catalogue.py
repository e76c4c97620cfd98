"""The home page as a catalogue: products grouped by category in the merchant's order, a filter
made of plain links, both languages, and one query for all the stock badges however many
products there are."""
from __future__ import annotations

import json
import re

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from kami.catalog.models import Category, Product
from kami.storefront.stock import stock_state, stock_states
from tests.factories import add_keys

pytestmark = pytest.mark.django_db


def shelves(page: str) -> list[str]:
    return re.findall(r'<h2 class="shelf-title" id="[^"]+">([^<]+)</h2>', page)


def put_in(product: Product, category: Category | None) -> Product:
    Product.objects.filter(pk=product.pk).update(category=category)
    return product


def test_products_are_grouped_by_category_in_the_merchants_order(client, make_product):
    # given two categories (music first by sort order) and a product in none
    games = Category.objects.create(slug="games", name="Games", sort_order=2)
    music = Category.objects.create(slug="music", name="Music", sort_order=1)
    put_in(make_product("g1", name="Game key"), games)
    put_in(make_product("m1", name="Music key"), music)
    put_in(make_product("m2", name="Album key"), music)
    make_product("loose", name="Loose key")
    # when
    en = client.get("/", HTTP_ACCEPT_LANGUAGE="en").content.decode()
    zh = client.get("/", HTTP_ACCEPT_LANGUAGE="zh-CN").content.decode()
    # then one shelf per category, in order, the uncategorised last, headings in the buyer's language
    assert shelves(en) == ["Music", "Games", "Other products"]
    assert shelves(zh) == ["Music", "Games", "其他商品"]
    music_shelf = en.split('id="shelf-music"')[1].split("</section>")[0]
    assert "Music key" in music_shelf and "Album key" in music_shelf and "Game key" not in music_shelf
    # and the filter is a row of links, "all" marked as the current one
    assert '<a href="/" aria-current="page">All categories</a>' in en
    assert '<a href="/?category=games">Games</a>' in en
    assert '<a href="/" aria-current="page">全部分类</a>' in zh


def test_a_category_link_shows_that_category_only(client, make_product):
    # given
    games = Category.objects.create(slug="games", name="Games")
    music = Category.objects.create(slug="music", name="Music")
    put_in(make_product("g1", name="Game key"), games)
    put_in(make_product("m1", name="Music key"), music)
    # when
    page = client.get("/?category=music", HTTP_ACCEPT_LANGUAGE="en").content.decode()
    # then
    assert "Music key" in page and "Game key" not in page
    assert '<a href="/?category=music" aria-current="page">Music</a>' in page
    assert '<input type="hidden" name="category" value="music">' in page  # a search stays in the category


def test_without_categories_there_is_no_filter_and_one_shelf(client, make_product):
    # given
    make_product("a", name="Card A")
    # when
    page = client.get("/", HTTP_ACCEPT_LANGUAGE="en").content.decode()
    # then
    assert 'class="categories"' not in page and shelves(page) == ["Products"]


def key_queries(queries: list[str]) -> list[str]:
    return [sql for sql in queries if "stock_key" in sql]


def home_queries(client) -> list[str]:
    """The SQL of one home page (copied: the next request clears Django's query log)."""
    with CaptureQueriesContext(connection) as captured:
        assert client.get("/", HTTP_ACCEPT_LANGUAGE="en").status_code == 200
    return [q["sql"] for q in captured.captured_queries]


def test_the_home_page_reads_every_stock_badge_in_one_query(client, make_product):
    # given three products in one category, the shop's settings already cached
    categories = [Category.objects.create(slug=f"c{i}", name=f"Category {i}", sort_order=i) for i in range(3)]
    for i in range(3):
        add_keys(put_in(make_product(f"a{i}", name=f"Card a{i}"), categories[0]), [f"A{i}-{n}" for n in range(2)])
    client.get("/", HTTP_ACCEPT_LANGUAGE="en")  # drawn and cached
    few = home_queries(client)
    # when there are twelve, in three categories, with every kind of stock
    for i in range(9):
        product = put_in(make_product(f"b{i}", name=f"Card b{i}", low_stock=50 if i == 7 else 0), categories[i % 3])
        add_keys(product, [f"B{i}-{n}" for n in range(i * 3)])
    Product.objects.filter(slug="b1").update(kind="manual")
    client.get("/", HTTP_ACCEPT_LANGUAGE="en")
    many = home_queries(client)
    page = client.get("/", HTTP_ACCEPT_LANGUAGE="en").content.decode()
    # then the cached page reads the key table once, and twelve products cost no more queries than three
    assert len(key_queries(many)) == 1, many
    assert len(many) == len(few)
    assert page.count('class="product"') == 12 and len(shelves(page)) == 3
    assert "Only 2 left" in page  # a0–a2
    assert "Only 21 left" in page  # b7: 21 keys, under its own low-stock threshold of 50
    assert "In stock" in page and "Sold out" in page  # b8: 24 keys; b0: none


def test_the_badges_in_one_query_say_what_each_product_page_says(make_product):
    # given every case: none, a few, at and past the threshold, a high threshold, reusable, manual
    cases = {"none": 0, "few": 3, "nine": 9, "ten": 10, "many": 30, "high": 20}
    products = []
    for slug, count in cases.items():
        product = make_product(slug, low_stock=50 if slug == "high" else 0)
        add_keys(product, [f"{slug}-{n}" for n in range(count)])
        products.append(product)
    reusable = make_product("shared", kind="reusable")
    add_keys(reusable, ["SHARED-1"])
    products += [reusable, make_product("person", kind="manual")]
    # when
    with CaptureQueriesContext(connection) as captured:
        together = stock_states(products=products)
    # then
    assert len(captured.captured_queries) == 1
    assert together == {p.pk: stock_state(product=p) for p in products}
    assert together[products[5].pk].left == 20 and together[products[3].pk].left is None


def plan_nodes(node: dict):
    yield node
    for child in node.get("Plans", []):
        yield from plan_nodes(child)


def subquery_loops(sql: str) -> list[int]:
    """How many times each subquery of `sql` ran, read from the engine's own analysed plan."""
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("EXPLAIN (ANALYZE, COSTS OFF, FORMAT JSON) " + sql)
            plan = cursor.fetchone()[0][0]["Plan"]
            return sorted(n["Actual Loops"] for n in plan_nodes(plan) if n.get("Parent Relationship") == "SubPlan")
        cursor.execute("ANALYZE FORMAT=JSON " + sql)  # MariaDB
        blocks = json.loads(cursor.fetchone()[0])["query_block"]["subqueries"]
        return sorted(b["expression_cache"]["query_block"]["r_loops"] for b in blocks)


def test_the_badge_query_counts_only_the_products_short_of_keys(make_product, server_db):
    # given a product with far more keys than any threshold, and one with a few
    big, small = make_product("big"), make_product("small")
    add_keys(big, [f"BIG-{n}" for n in range(300)])
    add_keys(small, ["SMALL-1", "SMALL-2"])
    with CaptureQueriesContext(connection) as captured:
        states = stock_states(products=[big, small])
    # when the statement is run under the engine's EXPLAIN ANALYZE
    loops = subquery_loops(captured.captured_queries[0]["sql"])
    # then the look for the 10th key ran for both products, the count for the small one only
    assert loops == [1, 2]
    assert states[big.pk].left is None and states[small.pk].left == 2
