"""Shop settings in the back office: owners only, saved through shop_settings_update (validated,
audited), a logo upload redrawn as PNG, and errors shown on the form with nothing written."""
from __future__ import annotations

import io

import pytest
from django.core.cache import cache
from django.core.files.uploadedfile import SimpleUploadedFile
from PIL import Image

from kami.audit.models import AuditLog
from kami.shop.selectors import CACHE_KEY, shop_settings_get
from tests.backoffice.staffing import admin_url, signed_in

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def fresh_cache():
    cache.delete(CACHE_KEY)  # the settings are cached per process; each test starts from its own rows
    yield
    cache.delete(CACHE_KEY)

FORM = {"name": "Moon Keys", "notice": "Back at 9:00", "notice_format": "text", "footer": "© Moon"}


def png() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (40, 20), (200, 30, 30)).save(out, "PNG")
    return out.getvalue()


@pytest.mark.parametrize("role,allowed", [("owner", True), ("operator", False), ("support", False)])
def test_the_page_per_role(role, allowed):
    client = signed_in(role, f"{role}-shop")
    assert client.get(admin_url("shop/")).status_code == (200 if allowed else 403)
    response = client.post(admin_url("shop/"), FORM)
    assert response.status_code == (302 if allowed else 403)
    assert (shop_settings_get().name == "Moon Keys") is allowed


def test_saving_is_audited_and_the_form_shows_what_is_stored():
    client = signed_in("owner", "owner-save")
    client.post(admin_url("shop/"), FORM)
    entry = AuditLog.objects.get(action="shop.settings_update")
    assert (entry.actor, entry.ip) == ("owner-save", "10.1.1.1")
    html = client.get(admin_url("shop/")).content.decode()
    assert 'value="Moon Keys"' in html and "Back at 9:00" in html and 'value="© Moon"' in html


def test_a_logo_is_uploaded_and_removed():
    client = signed_in("owner", "owner-logo")
    client.post(admin_url("shop/"), {**FORM, "logo": SimpleUploadedFile("logo.png", png(), "image/png")})
    logo = shop_settings_get().logo
    assert logo.startswith("logo-") and logo.endswith(".png")
    assert f"shop/logo/{logo}" in client.get(admin_url("shop/")).content.decode()
    client.post(admin_url("shop/"), {**FORM, "logo_remove": "on"})
    assert shop_settings_get().logo == ""


def test_bad_input_is_shown_on_the_form_and_nothing_is_written():
    client = signed_in("owner", "owner-bad")
    page = client.post(admin_url("shop/"), {**FORM, "name": "x" * 81,
                                            "logo": SimpleUploadedFile("logo.png", b"not a picture", "image/png")})
    html = page.content.decode()
    assert page.status_code == 400
    assert "at most 80 characters" in html and "not a picture Kami can read" in html
    assert "x" * 81 in html  # what was typed stays in the form
    assert shop_settings_get().name != "x" * 81 and shop_settings_get().logo == ""
    assert not AuditLog.objects.filter(action="shop.settings_update").exists()
