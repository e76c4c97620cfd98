"""Product pictures on the buyer's pages: served for good under a content-hashed name, typed by
us (never sniffed), shown on the home page and the product page; set from the command line."""
from __future__ import annotations

import pytest
from django.core.management import CommandError, call_command
from django.utils import translation

from kami.catalog.models import Product
from kami.catalog.pictures import product_picture_set
from tests.catalog.picture_files import opened, photo_with_gps, png
from tests.factories import add_keys

pytestmark = [pytest.mark.django_db, pytest.mark.sqlite_only]  # picture processing and serving: the same on every engine


@pytest.fixture(autouse=True)
def pictures_dir(settings, tmp_path):
    settings.STORAGES = {**settings.STORAGES, "kami_pictures": {
        "BACKEND": "django.core.files.storage.FileSystemStorage", "OPTIONS": {"location": str(tmp_path)}}}
    return tmp_path


def test_a_picture_is_served_as_webp_for_good_and_never_sniffed(client, make_product):
    # given a product with a picture
    product = make_product("steam", name="Steam 50")
    product_picture_set(product=product, source=photo_with_gps(), actor="test")
    # when
    response = client.get(f"/pictures/{product.picture_thumb}")
    # then
    assert response.status_code == 200 and response["Content-Type"] == "image/webp"
    assert response["Cache-Control"] == "public, max-age=31536000, immutable"
    assert response["X-Content-Type-Options"] == "nosniff"
    assert "sandbox" in response["Content-Security-Policy"]
    assert opened(b"".join(response.streaming_content)).size == (360, 480)


@pytest.mark.parametrize("name", ["../kami.sqlite3", "1-0123456789abcdef-thumb.webp", "x.webp",
                                  "1-0123456789abcdef-thumb.svg", "1-0123456789ABCDEF-page.webp"])
def test_only_stored_picture_names_are_served(client, name):
    # when / then
    assert client.get(f"/pictures/{name}").status_code == 404


def test_an_old_picture_url_stops_working_when_the_picture_is_replaced(client, make_product):
    # given
    product = make_product("steam")
    product_picture_set(product=product, source=png(colour=(255, 0, 0, 255)), actor="test")
    old = f"/pictures/{product.picture_page}"
    # when
    product_picture_set(product=product, source=png(colour=(0, 0, 255, 255)), actor="test")
    # then
    assert client.get(old).status_code == 404
    assert client.get(f"/pictures/{product.picture_page}").status_code == 200


def test_home_and_product_page_show_the_picture(client, make_product):
    # given a product with a picture and one without
    product = make_product("steam", name="Steam <50>")
    add_keys(product, ["K-1"])
    product_picture_set(product=product, source=png(), actor="test")
    make_product("plain", name="Plain card")
    # when
    home = client.get("/", HTTP_ACCEPT_LANGUAGE="en").content.decode()
    page = client.get("/p/steam", HTTP_ACCEPT_LANGUAGE="en").content.decode()
    # then the card has the thumbnail, the product page the page size with the name as its alt text
    assert f'src="/pictures/{product.picture_thumb}"' in home
    assert home.count('src="/pictures/') == 1
    assert f'<img class="picture" src="/pictures/{product.picture_page}" alt="Steam &lt;50&gt;"' in page


def test_the_command_line_sets_and_removes_a_picture(tmp_path, pictures_dir, make_product, capsys):
    # given a product and a photo on disk
    product = make_product("steam")
    photo = tmp_path / "photo.jpg"
    photo.write_bytes(photo_with_gps())
    # when
    call_command("product", "set", "steam", f"picture=@{photo}")
    # then
    product.refresh_from_db()
    assert product.picture and (pictures_dir / product.picture_page).exists()
    assert f"/pictures/{product.picture_page}" in capsys.readouterr().out
    # and `picture=` removes it
    call_command("product", "set", "steam", "picture=")
    assert Product.objects.get(pk=product.pk).picture == ""
    assert not (pictures_dir / product.picture_page).exists()


@pytest.mark.parametrize(("args", "message"), [
    (["picture=photo.jpg"], "give a picture file as picture=@path"),
    (["name=x"], "write picture=@path/to/picture.png"),
    (["picture=@/nonexistent/photo.jpg"], "cannot read '/nonexistent/photo.jpg'"),
])
def test_the_command_line_says_what_to_write(make_product, args, message):
    # given
    make_product("steam")
    # when / then
    with pytest.raises(CommandError, match=message) as refused:
        call_command("product", "set", "steam", *args)
    assert refused.value.returncode == 2


def test_the_command_line_names_a_file_that_is_not_a_picture_in_english(tmp_path, make_product):
    # given a text file, and Chinese as the shop's language
    make_product("steam")
    note = tmp_path / "note.png"
    note.write_text("not a picture")
    # when / then the shell still reads English
    with translation.override("zh-hans"), pytest.raises(
            CommandError, match="This is not a picture Kami can read; use a PNG, JPEG, GIF or WebP file"):
        call_command("product", "set", "steam", f"picture=@{note}")
