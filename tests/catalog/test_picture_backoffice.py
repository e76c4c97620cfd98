"""The product form in the back office takes a picture: checked on the form, stored through the
catalog (old files deleted, audited), removable."""
from __future__ import annotations

from decimal import Decimal

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from kami.audit.models import AuditLog
from kami.catalog.models import Product
from tests.backoffice.staffing import admin_url, signed_in
from tests.backoffice.test_catalog_admin import product_form, tier_prefix, with_prefix
from tests.catalog.picture_files import photo_with_gps, png

pytestmark = [pytest.mark.django_db, pytest.mark.sqlite_only]  # picture processing: the same on every engine


@pytest.fixture(autouse=True)
def pictures_dir(settings, tmp_path):
    settings.STORAGES = {**settings.STORAGES, "kami_pictures": {
        "BACKEND": "django.core.files.storage.FileSystemStorage", "OPTIONS": {"location": str(tmp_path)}}}
    return tmp_path


def steam_form(client, **overrides) -> dict:
    return with_prefix(product_form(slug="steam", name="Steam", kind="unique", custom_fields="[]", **overrides),
                       tier_prefix(client))


def test_an_operator_uploads_replaces_and_removes_a_picture(pictures_dir, make_product):
    # given a product and an operator
    product = make_product("steam")
    client = signed_in("operator")
    change = admin_url(f"catalog/product/{product.pk}/change/")
    # when a photo is uploaded with the product form
    photo = SimpleUploadedFile("photo.jpg", photo_with_gps(), content_type="image/jpeg")
    response = client.post(change, {**steam_form(client), "picture_upload": photo})
    # then it is stored at both sizes and the form shows it
    assert response.status_code == 302, response.content.decode()[:3000]
    product.refresh_from_db()
    first = product.picture
    assert sorted(p.name for p in pictures_dir.iterdir()) == sorted([product.picture_page, product.picture_thumb])
    form_page = client.get(change).content.decode()
    assert f'src="/pictures/{product.picture_thumb}"' in form_page and 'enctype="multipart/form-data"' in form_page
    # when another picture replaces it, then the old files are gone
    other = SimpleUploadedFile("logo.png", png(), content_type="image/png")
    assert client.post(change, {**steam_form(client), "picture_upload": other}).status_code == 302
    product.refresh_from_db()
    assert product.picture != first
    assert sorted(p.name for p in pictures_dir.iterdir()) == sorted([product.picture_page, product.picture_thumb])
    # when it is removed, then nothing is left
    assert client.post(change, {**steam_form(client), "picture_remove": "on"}).status_code == 302
    assert Product.objects.get(pk=product.pk).picture == "" and list(pictures_dir.iterdir()) == []
    assert AuditLog.objects.filter(action="product_picture", object_id=str(product.pk)).count() == 3


def test_a_file_that_is_not_a_picture_is_named_on_the_form(pictures_dir, make_product):
    # given
    product = make_product("steam", price=Decimal("48.00"))
    client = signed_in("operator")
    fake = SimpleUploadedFile("photo.png", b"<?php echo 'hi'; ?>", content_type="image/png")
    # when
    response = client.post(admin_url(f"catalog/product/{product.pk}/change/"),
                           {**steam_form(client, price="45.00"), "picture_upload": fake}, HTTP_ACCEPT_LANGUAGE="en")
    # then the form comes back with the catalog's message, and nothing changed
    assert response.status_code == 200
    assert "not a picture Kami can read" in response.content.decode()
    assert Product.objects.get(pk=product.pk).price == 48 and list(pictures_dir.iterdir()) == []


def test_a_new_product_can_come_with_its_picture(pictures_dir):
    # given an operator filling in the add form with a picture
    client = signed_in("operator")
    photo = SimpleUploadedFile("card.png", png(), content_type="image/png")
    # when
    response = client.post(admin_url("catalog/product/add/"), {**steam_form(client), "picture_upload": photo})
    # then
    assert response.status_code == 302, response.content.decode()[:3000]
    product = Product.objects.get(slug="steam")
    assert product.picture.startswith(f"{product.pk}-") and (pictures_dir / product.picture_page).exists()
