"""Product pictures: checked, drawn again at two sizes without metadata, stored, replaced."""
from __future__ import annotations

import io
from pathlib import Path

import pytest
from django.utils import translation
from PIL import Image

from kami.audit.models import AuditLog
from kami.catalog.models import PictureFile, Product
from kami.catalog.pictures import (PICTURE_MAX_BYTES, picture_storage, product_picture_remove,
                                   product_picture_set)
from kami.catalog.services import product_update
from kami.core.errors import BadInput
from tests.catalog.picture_files import CAMERA, bomb, opened, photo_with_gps, png

pytestmark = [pytest.mark.django_db, pytest.mark.sqlite_only]  # picture processing: the same on every engine


@pytest.fixture(autouse=True)
def english():
    with translation.override("en"):  # the messages are translated; these tests read the English
        yield


@pytest.fixture
def pictures_dir(settings, tmp_path):
    """Pictures in a storage of the test's own (the `kami_pictures` storage a deployment may set)."""
    settings.STORAGES = {**settings.STORAGES, "kami_pictures": {
        "BACKEND": "django.core.files.storage.FileSystemStorage", "OPTIONS": {"location": str(tmp_path)}}}
    return tmp_path


def stored(folder) -> set[str]:
    return {p.name for p in folder.iterdir()}


def test_a_phone_photo_is_stored_at_two_sizes_upright_and_without_its_exif(pictures_dir, make_product):
    # given a JPEG with the camera's make, a GPS position and a "turn 90°" orientation
    product = make_product("steam")
    photo = photo_with_gps((1600, 1200))
    assert opened(photo).getexif().get_ifd(0x8825)  # the GPS block really is there
    # when
    product_picture_set(product=product, source=photo, actor="test")
    # then two WebP files, each within its box, turned upright (1200×1600 → portrait)
    product.refresh_from_db()
    assert stored(pictures_dir) == {product.picture_thumb, product.picture_page}
    thumb = (pictures_dir / product.picture_thumb).read_bytes()
    page = (pictures_dir / product.picture_page).read_bytes()
    assert opened(thumb).format == "WEBP" and opened(thumb).size == (360, 480)
    assert opened(page).size == (900, 1200)
    # and nothing of the EXIF survives: no GPS, no camera, no EXIF block at all
    for data in (thumb, page):
        assert len(opened(data).getexif()) == 0
        assert b"Exif" not in data and CAMERA.encode() not in data and b"GPS" not in data
        assert "exif" not in opened(data).info and "xmp" not in opened(data).info
    assert AuditLog.objects.filter(action="product_picture", object_id=str(product.pk), actor="test").exists()


def test_a_new_picture_gets_a_new_name_and_the_old_files_go(pictures_dir, make_product):
    # given a product with a picture
    product = make_product("steam")
    product_picture_set(product=product, source=png(colour=(255, 0, 0, 255)), actor="test")
    first = product.picture
    # when another picture replaces it
    product_picture_set(product=product, source=png(colour=(0, 255, 0, 255)), actor="test")
    # then the name changed (a new URL) and only the new files are left
    assert product.picture != first and product.picture.startswith(f"{product.pk}-")
    assert stored(pictures_dir) == {product.picture_thumb, product.picture_page}
    assert Product.objects.get(pk=product.pk).picture == product.picture


def test_removing_the_picture_deletes_its_files(pictures_dir, make_product):
    # given
    product = make_product("steam")
    product_picture_set(product=product, source=png(), actor="test")
    # when
    product_picture_remove(product=product, actor="test")
    # then
    assert Product.objects.get(pk=product.pk).picture == "" and stored(pictures_dir) == set()
    assert product.picture_thumb == ""


def test_transparency_is_kept(pictures_dir, make_product):
    # given a half-transparent PNG
    product = make_product("steam")
    # when
    product_picture_set(product=product, source=png((300, 200), colour=(0, 0, 255, 128)), actor="test")
    # then
    image = opened((pictures_dir / product.picture_page).read_bytes())
    assert image.mode == "RGBA" and image.size == (300, 200)  # never enlarged
    assert image.getpixel((10, 10))[3] == 128


@pytest.mark.parametrize(("data", "message"), [
    (b"", "The file is empty"),
    (b"<svg xmlns='http://www.w3.org/2000/svg'><script>alert(1)</script></svg>", "not a picture Kami can read"),
    (png()[:200], "not a picture Kami can read"),  # truncated: Pillow's verify() finds it
    (b"\x89PNG\r\n\x1a\n" + b"\0" * PICTURE_MAX_BYTES, "larger than 8 MB"),
    (bomb((6000, 4000)), "6000×4000 pixels, more than 20 million"),
])
def test_what_is_not_an_acceptable_picture_is_refused_by_name(pictures_dir, make_product, data, message):
    # given
    product = make_product("steam")
    # when
    with pytest.raises(BadInput) as refused:
        product_picture_set(product=product, source=data, actor="test")
    # then the message names the problem, and nothing was stored
    assert message in str(refused.value)
    assert Product.objects.get(pk=product.pk).picture == "" and stored(pictures_dir) == set()


def test_a_format_kami_does_not_take_is_named(pictures_dir, make_product):
    # given a BMP
    out = io.BytesIO()
    Image.new("RGB", (10, 10)).save(out, "BMP")
    # when / then
    with pytest.raises(BadInput, match="BMP pictures are not accepted; use PNG, JPEG, GIF or WebP"):
        product_picture_set(product=make_product("steam"), source=out.getvalue(), actor="test")


def test_without_a_configured_storage_pictures_go_to_the_database(settings, make_product):
    # given no kami_pictures storage
    product = make_product("steam")
    # when
    product_picture_set(product=product, source=png(), actor="test")
    # then both files are rows (every web and worker machine reads them), none in the data dir
    storage, name = picture_storage(), product.picture_page
    assert set(PictureFile.objects.values_list("name", flat=True)) == {product.picture_thumb, name}
    with storage.open(name, "rb") as f:
        assert opened(f.read()).size == (640, 480)
    assert not (Path(settings.DATA_DIR) / "pictures" / name).exists()
    product_picture_remove(product=product, actor="test")
    assert not storage.exists(name) and not PictureFile.objects.exists()


def test_the_refusal_is_in_the_merchants_language(pictures_dir, make_product):
    # given a merchant reading Chinese
    product = make_product("steam")
    # when / then
    with translation.override("zh-hans"), pytest.raises(BadInput, match="这不是 Kami 能读取的图片"):
        product_picture_set(product=product, source=b"GIF89a but not really", actor="test")


def test_an_edit_from_a_page_loaded_before_the_picture_changed_keeps_the_new_picture(pictures_dir, make_product):
    # given a product edited on a form loaded before someone gave it a picture
    product = make_product("steam", name="Steam")
    edited = Product.objects.get(pk=product.pk)
    product_picture_set(product=product, source=png(), actor="cli")
    # when the edit is saved
    edited.name = "Steam Wallet"
    product_update(product=edited, actor="test")
    # then the name changed and the picture (whose files exist) stayed
    stored_product = Product.objects.get(pk=product.pk)
    assert stored_product.name == "Steam Wallet" and stored_product.picture == product.picture
    assert (pictures_dir / stored_product.picture_page).exists()
