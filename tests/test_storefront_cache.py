"""Cached storefront pages (kami/storefront/fragments.py) never show an old state: a sale, an
import, a product edit, a shop-settings change or another language shows on the very next
page, and no buyer gets another's CSRF token or typed values. Nothing here clears the page
cache: the keys alone must keep it right (a second server process would not hear of a clear)."""
from __future__ import annotations

import io
import re
from decimal import Decimal

import pytest
from django.core.cache import cache, caches
from django.test import Client
from django.utils import translation

from kami.catalog.models import Product
from kami.catalog.services import product_change, tier_prices_save
from kami.orders.models import Order
from kami.shop.services import shop_settings_update
from kami.stock.importer import keys_import
from kami.stock.models import Key
from kami.storefront import product as product_pages
from kami.storefront.fragments import CACHE_ALIAS, page_cached
from tests.factories import add_keys
from tests.sandbox_play import enable_sandbox, sandbox_notify

pytestmark = pytest.mark.django_db

TOKEN = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')


@pytest.fixture(autouse=True)
def fresh_settings():
    cache.clear()  # the shop settings' own cache (not the pages'): the database is rolled back between tests
    yield
    cache.clear()


def page(client: Client, path: str, language: str = "en") -> str:
    response = client.get(path, HTTP_ACCEPT_LANGUAGE=language)
    assert response.status_code == 200
    return response.content.decode()


def served_from_cache(client: Client, path: str) -> bool:
    """True when the page came out of the cache: the test client records every template drawn."""
    return client.get(path, HTTP_ACCEPT_LANGUAGE="en").templates == []


def card(home: str, slug: str) -> str:
    return home.split(f'id="product-{slug}"')[1].split("</article>")[0]


# Committed too: outside a test's transaction SQLite's reads answer from the thread's last read
# until the database says something was written (storefront.reads._unless_unchanged).
@pytest.mark.parametrize("committed", [False, pytest.param(True, marks=pytest.mark.django_db(transaction=True))])
def test_the_last_key_sold_through_checkout_shows_sold_out_at_once(make_product, committed):
    # given a product with one key, both pages drawn and cached
    enable_sandbox()
    product = make_product("last-one", name="Last card")
    add_keys(product, ["LAST-1"])
    buyer = Client(enforce_csrf_checks=True)
    assert "Only 1 left" in card(page(buyer, "/"), "last-one") and "Only 1 left" in page(buyer, "/p/last-one")
    assert served_from_cache(buyer, "/") and served_from_cache(buyer, "/p/last-one")
    # when it is bought on the cached product page (its token) and the gateway says paid
    token = TOKEN.search(page(buyer, "/p/last-one")).group(1)
    bought = buyer.post("/buy/last-one", {"csrfmiddlewaretoken": token, "quantity": "1", "email": "b@example.com",
                                         "gateway": "sandbox"})
    assert bought.status_code == 302
    order = Order.objects.get(product=product)
    assert sandbox_notify(Client(), order_no=order.order_no, amount=str(order.amount)).status_code == 200
    # then the very next pages say sold out
    assert Order.objects.get(pk=order.pk).status == Order.Status.FULFILLED
    home, product_page = page(buyer, "/"), page(buyer, "/p/last-one")
    assert "Sold out" in card(home, "last-one") and "Only 1 left" not in home
    assert 'class="badge badge-out"' in product_page and "Only 1 left" not in product_page
    assert '<button type="submit" disabled>' in product_page


def test_an_import_raising_stock_changes_the_badge(make_product):
    # given a product sold out, then with two keys, each page cached
    client = Client()
    product = make_product("refill", name="Refill card")
    assert "Sold out" in card(page(client, "/"), "refill") and served_from_cache(client, "/")
    add_keys(product, ["R-1", "R-2"])
    assert "Only 2 left" in card(page(client, "/"), "refill") and "Only 2 left" in page(client, "/p/refill")
    # when an import brings twenty more
    keys_import(product=product, stream=io.BytesIO(b"".join(b"IMPORTED-%d\n" % n for n in range(20))), source="t")
    # then both pages say in stock at once
    assert "In stock" in card(page(client, "/"), "refill")
    assert "In stock" in page(client, "/p/refill") and "Only 2 left" not in page(client, "/p/refill")


def test_a_voided_key_shows_on_the_badge(make_product):
    # given three keys, the pages cached
    client = Client()
    product = make_product("voided", name="Void card")
    add_keys(product, ["V-1", "V-2", "V-3"])
    assert "Only 3 left" in page(client, "/p/voided") and served_from_cache(client, "/p/voided")
    # when one is voided in the database (as the back office's void does)
    Key.objects.filter(pk=Key.objects.filter(product=product).first().pk).update(status=Key.Status.VOID)
    # then
    assert "Only 2 left" in page(client, "/p/voided") and "Only 2 left" in card(page(client, "/"), "voided")


def test_an_edit_of_name_price_currency_and_tiers_shows_at_once(make_product):
    # given the pages cached
    client = Client()
    product = make_product("edit-me", name="Old name", price=Decimal("10.00"))
    add_keys(product, ["E-1"])
    assert "Old name" in page(client, "/") and "CN¥10.00" in page(client, "/p/edit-me")
    assert served_from_cache(client, "/") and served_from_cache(client, "/p/edit-me")
    # when the merchant renames and reprices it
    product_change(slug="edit-me", changes={"name": "New name", "price": Decimal("12.50")}, actor="test")
    # then
    home, product_page = page(client, "/"), page(client, "/p/edit-me")
    assert "New name" in card(home, "edit-me") and "CN¥12.50" in card(home, "edit-me") and "Old name" not in home
    assert "New name" in product_page and "CN¥12.50" in product_page and "CN¥10.00" not in product_page
    # and when it moves to another currency and gets a volume price
    product_change(slug="edit-me", changes={"currency": "USD"}, actor="test")
    tier_prices_save(product=Product.objects.get(slug="edit-me"), tiers={3: Decimal("11.00")}, actor="test")
    product_page = page(client, "/p/edit-me")
    assert "$12.50" in product_page and "$11.00" in product_page and "CN¥" not in product_page
    assert "$12.50" in card(page(client, "/"), "edit-me") and "CN¥" not in card(page(client, "/"), "edit-me")


def test_a_shop_settings_change_shows_at_once(make_product):
    # given the pages cached
    client = Client()
    make_product("any", name="Any card")
    for path in ("/", "/p/any"):
        assert "Any card" in page(client, path) and served_from_cache(client, path)
    # when the merchant renames the shop and writes a notice
    shop_settings_update(actor="test", name="Renamed Shop", notice="Closed on Sunday")
    # then
    for path in ("/", "/p/any"):
        shown = page(client, path)
        assert "Renamed Shop" in shown and "Closed on Sunday" in shown


def test_a_product_taken_off_sale_leaves_the_home_page(make_product):
    client = Client()
    make_product("gone", name="Gone card")
    assert "Gone card" in page(client, "/")
    product_change(slug="gone", changes={"active": False}, actor="test")
    assert "Gone card" not in page(client, "/")
    assert client.get("/p/gone").status_code == 404


def test_each_language_gets_its_own_page(make_product):
    # given the English pages cached
    client = Client()
    product = make_product("lang", name="Language card")
    add_keys(product, ["L-1", "L-2", "L-3", "L-4", "L-5", "L-6", "L-7", "L-8", "L-9", "L-10", "L-11"])
    assert "In stock" in page(client, "/", "en") and "In stock" in page(client, "/p/lang", "en")
    # when the buyer switches to Chinese
    client.post("/i18n/setlang/", {"language": "zh-hans", "next": "/"})
    # then
    assert "有货" in card(client.get("/").content.decode(), "lang")
    assert "有货" in client.get("/p/lang").content.decode() and "In stock" not in client.get("/p/lang").content.decode()


def test_every_buyer_gets_their_own_csrf_token_and_it_works(make_product):
    # given two buyers on the same cached pages
    enable_sandbox()
    product = make_product("tokens", name="Token card")
    add_keys(product, ["T-1", "T-2", "T-3"])
    alice, bob = Client(enforce_csrf_checks=True), Client(enforce_csrf_checks=True)
    for path in ("/", "/p/tokens"):
        page(alice, path)
        assert served_from_cache(alice, path)
    # when each reads the pages
    alice_home, bob_home = page(alice, "/"), page(bob, "/")
    alice_product, bob_product = page(alice, "/p/tokens"), page(bob, "/p/tokens")
    # then every form carries a real token, each buyer's own
    for shown in (alice_home, bob_home, alice_product, bob_product):
        assert "kamiCsrfSlot" not in shown and len(set(TOKEN.findall(shown))) == 1
    assert TOKEN.search(alice_home).group(1) != TOKEN.search(bob_home).group(1)
    assert TOKEN.search(alice_product).group(1) != TOKEN.search(bob_product).group(1)
    assert "csrftoken" in alice.cookies and alice.cookies["csrftoken"].value != bob.cookies["csrftoken"].value
    form = {"quantity": "1", "email": "buyer@example.com", "gateway": "sandbox"}
    # and a token works for its own buyer only: the quick buy on the home page, the product page's form
    assert bob.post("/buy/tokens", {**form, "csrfmiddlewaretoken": TOKEN.search(alice_home).group(1)}).status_code == 403
    assert alice.post("/buy/tokens", {**form, "csrfmiddlewaretoken": TOKEN.search(alice_home).group(1)}).status_code == 302
    assert bob.post("/buy/tokens", {**form, "csrfmiddlewaretoken": TOKEN.search(bob_product).group(1)}).status_code == 302
    # and the language form of the cached page posts too
    switched = alice.post("/i18n/setlang/", {"csrfmiddlewaretoken": TOKEN.search(alice_product).group(1),
                                             "language": "zh-hans", "next": "/p/tokens"})
    assert switched.status_code == 302


def test_what_a_buyer_typed_reaches_no_other_page(make_product):
    # given a buyer whose form comes back with an error and what they typed
    enable_sandbox()
    product = make_product("typed", name="Typed card", custom_fields=[{"name": "uid", "label": "Game UID",
                                                                        "required": True, "max_length": 20}])
    add_keys(product, ["TY-1"])
    alice = Client()
    refused = alice.post("/buy/typed", {"quantity": "1", "email": "alice@example.com", "gateway": "sandbox",
                                        "custom_uid": ""}, HTTP_ACCEPT_LANGUAGE="en")
    assert refused.status_code == 400 and "alice@example.com" in refused.content.decode()
    coupon = alice.get("/p/typed?coupon=NOSUCH", HTTP_ACCEPT_LANGUAGE="en")
    searched = alice.get("/?q=Typed", HTTP_ACCEPT_LANGUAGE="en")
    # when another buyer opens the same pages
    bob = Client()
    # then the untouched pages come from the cache with nothing of Alice's, and hers were drawn for her
    for path in ("/", "/p/typed"):
        page(bob, path)
        assert served_from_cache(bob, path) and "alice@example.com" not in page(bob, path)
    assert "NOSUCH" in coupon.content.decode() and coupon.templates
    assert "Typed card" in searched.content.decode() and searched.templates
    assert alice.get("/p/typed?coupon=NOSUCH").templates and alice.get("/?q=Typed").templates


def test_a_page_key_covers_every_column_and_refuses_what_it_cannot_read(rf, make_product):
    # given a product as its page's state reads it
    from kami.storefront.fragments import page_key
    from kami.storefront.reads import product_state

    product = make_product("keyed", name="Keyed card")
    request = rf.get("/p/keyed")
    first = page_key(request, "t", product_state(slug="keyed"))
    assert page_key(request, "t", product_state(slug="keyed")) == first
    # when any column changes, even one no template shows today
    Product.objects.filter(pk=product.pk).update(max_qty=product.max_qty + 1)
    # then the key differs, and an object the key cannot read is refused, not keyed by its id
    assert page_key(request, "t", product_state(slug="keyed")) != first
    with pytest.raises(TypeError):
        page_key(request, "t", (object(),))


def test_a_page_that_cannot_be_keyed_is_drawn_uncached(rf, caplog):
    from kami.storefront.fragments import page_cached

    request = rf.get("/")
    response = page_cached(request, "storefront/home.html", state=(object(),), state_again=lambda: (object(),),
                           context=lambda: {"shelves": []})
    assert response.status_code == 200 and "kamiCsrfSlot" not in response.content.decode()
    assert "drawn uncached" in caplog.text


def test_a_product_taken_off_sale_while_its_page_is_drawn_gets_the_shops_not_found_page(make_product, monkeypatch):
    # given: the product is taken off sale just after its page's state was read
    product = make_product("going", name="Going card")
    read = product_pages.product_state

    def then_off_sale(*, slug):
        state = read(slug=slug)
        Product.objects.filter(pk=product.pk).update(active=False)
        return state

    monkeypatch.setattr(product_pages, "product_state", then_off_sale)
    # when
    response = Client().get("/p/going", HTTP_ACCEPT_LANGUAGE="en")
    # then: the shop's own "no such product" page, as for any product not on sale
    assert response.status_code == 404
    assert "storefront/not_found_product.html" in [t.name for t in response.templates]


def test_a_page_served_again_for_the_same_state_object_still_follows_its_path_language_and_settings(rf, settings):
    # given one immutable state object (as storefront.reads keeps it on SQLite) and its page drawn
    caches[CACHE_ALIAS].clear()
    state, drawn = (("the same",),), []

    def serve(path: str = "/", language: str = "en", state: tuple = state) -> str:
        def context() -> dict:
            drawn.append(path)
            return {"shelves": []}

        with translation.override(language):
            response = page_cached(rf.get(path), "storefront/home.html", state=state, state_again=lambda: state,
                                   context=context)
        return TOKEN.sub("", response.content.decode())

    english = serve()
    # when it is asked again with the page cache emptied: then this thread serves what it served
    caches[CACHE_ALIAS].clear()
    assert serve() == english and len(drawn) == 1
    # when anything else the key holds differs, or the state: then the page is drawn for it
    assert 'value="/?category=other"' in serve("/?category=other") and len(drawn) == 2
    assert 'lang="zh-hans"' in serve(language="zh-hans") and len(drawn) == 3
    settings.KAMI_CAPTCHA = True
    assert serve() and len(drawn) == 4
    settings.KAMI_CAPTCHA = False
    shop_settings_update(actor="test", name="Renamed Shop")
    assert "Renamed Shop" in serve() and len(drawn) == 5
    assert serve(state=(("another",),)) and len(drawn) == 6
