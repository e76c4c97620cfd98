"""The catalogue in a real browser (Debian's Chromium through Playwright), at a phone and a
desktop size, in zh-hans and en: the home page with pictures and categories, the category filter
(plain links), a product page with its picture; axe-core finds nothing serious on any of them.
Screenshots go to test-output/e2e/catalogue-*/."""
from __future__ import annotations

import io
import re

import pytest
from PIL import Image, ImageDraw

from kami.catalog.models import Category, Product
from kami.catalog.pictures import product_picture_set
from kami.stock.services import keys_generate
from tests.e2e.chromium import SHOTS
from tests.e2e.test_a11y_storefront import blocking
from tests.sandbox_play import enable_sandbox

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.sqlite_only]

PHONE, DESKTOP = {"width": 390, "height": 844}, {"width": 1280, "height": 900}
SHELF = {  # category → products (slug, name, colour)
    ("games", "Games 游戏", 1): [("steam-50", "Steam Wallet 50", (23, 42, 80)), ("psn-100", "PSN 100", (0, 85, 170)),
                                 ("xbox-25", "Xbox 25", (16, 124, 16))],
    ("music", "Music 音乐", 2): [("spotify-3m", "Spotify 3 months", (30, 185, 84)),
                                 ("apple-music", "Apple Music 1 month", (250, 45, 72))],
}


def card_picture(name: str, colour: tuple[int, int, int]) -> bytes:
    """A photo-sized JPEG of a gift card, as a merchant would upload one."""
    image = Image.new("RGB", (1600, 1000), colour)
    draw = ImageDraw.Draw(image)
    draw.rounded_rectangle((120, 120, 1480, 880), radius=60, outline=(255, 255, 255), width=18)
    draw.text((200, 420), name, fill=(255, 255, 255), font_size=120)
    out = io.BytesIO()
    image.save(out, "JPEG", quality=88)
    return out.getvalue()


def stock_the_shop() -> None:
    for (slug, name, order), products in SHELF.items():
        category = Category.objects.create(slug=slug, name=name, sort_order=order)
        for product_slug, product_name, colour in products:
            product = Product.objects.create(slug=product_slug, name=product_name, price="50.00", category=category)
            keys_generate(product=product, count=3 if product_slug == "psn-100" else 20, actor="test")
            product_picture_set(product=product, source=card_picture(product_name, colour), actor="test")
    Product.objects.create(slug="no-picture", name="Mystery key", price="9.90")  # no category, no picture


@pytest.mark.parametrize("locale,viewport,words", [
    ("zh-CN", PHONE, {"all": "全部分类", "other": "其他商品", "left": "仅剩 3 件"}),
    ("en-US", PHONE, {"all": "All categories", "other": "Other products", "left": "Only 3 left"}),
    ("zh-CN", DESKTOP, {"all": "全部分类", "other": "其他商品", "left": "仅剩 3 件"}),
    ("en-US", DESKTOP, {"all": "All categories", "other": "Other products", "left": "Only 3 left"}),
])
def test_a_buyer_browses_the_catalogue_by_category_with_pictures(browser, live_server, settings, tmp_path,
                                                                 locale, viewport, words):
    # given a shop with two categories of products with pictures, and one product with neither
    settings.KAMI_BASE_URL = live_server.url
    settings.STORAGES = {**settings.STORAGES, "kami_pictures": {
        "BACKEND": "django.core.files.storage.FileSystemStorage", "OPTIONS": {"location": str(tmp_path)}}}
    enable_sandbox()
    stock_the_shop()
    context = browser.new_context(locale=locale, viewport=viewport)
    page = context.new_page()
    refused = []  # anything the Content-Security-Policy blocked
    page.on("console", lambda m: refused.append(m.text) if "Content Security Policy" in m.text else None)
    shots = SHOTS / f"catalogue-{locale}-{viewport['width']}"
    shots.mkdir(parents=True, exist_ok=True)
    # when the buyer opens the home page
    page.goto(live_server.url + "/")
    # then shelves in the merchant's order, each card's picture loaded, the badge in the buyer's language
    assert page.locator("h2.shelf-title").all_inner_texts() == ["Games 游戏", "Music 音乐", words["other"]]
    thumbs = page.locator(".product .thumb img")
    assert thumbs.count() == 5
    for i in range(5):  # lazy pictures load as they come into view
        thumbs.nth(i).scroll_into_view_if_needed()
        page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=thumbs.nth(i).element_handle())
        assert thumbs.nth(i).evaluate("img => img.naturalWidth") == 480
    page.screenshot(path=str(shots / "1-home.png"), full_page=True)
    problems = blocking(page, "home")
    assert words["left"] in page.inner_text("#product-psn-100")
    assert page.locator(".categories a[aria-current=page]").inner_text() == words["all"]
    # when the buyer follows the Music link
    page.click(".categories >> text=Music 音乐")
    page.wait_for_url(re.compile(r"/\?category=music$"))
    page.screenshot(path=str(shots / "2-music.png"), full_page=True)
    # then only music is shown
    assert page.locator("h2.shelf-title").all_inner_texts() == ["Music 音乐"]
    assert page.locator("article.product").count() == 2
    problems += blocking(page, "category")
    # when the buyer opens a product
    page.click("#product-spotify-3m h3 a")
    page.wait_for_url(re.compile(r"/p/spotify-3m$"))
    picture = page.locator("img.picture")
    picture.wait_for()
    page.wait_for_load_state("networkidle")
    page.screenshot(path=str(shots / "3-product.png"), full_page=True)
    # then the page-size picture is shown, named by the product's name, within the page's width
    assert picture.get_attribute("alt") == "Spotify 3 months"
    assert picture.evaluate("img => img.complete && img.naturalWidth") == 1200
    box = picture.bounding_box()
    assert 0 < box["width"] <= viewport["width"]
    problems += blocking(page, "product")
    assert problems == []  # axe-core: no serious or critical finding on any of the three pages
    assert refused == []
    context.close()
