"""The merchant's shop settings: validated, audited, cached; shown on every buyer page and in
emails; set from the CLI; the logo re-drawn as a PNG and served by us with a safe type."""
from __future__ import annotations

import io

import pytest
from django.core.cache import cache
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.test.utils import CaptureQueriesContext
from PIL import Image

from kami.audit.models import AuditLog
from kami.core.errors import BadInput
from kami.core.models import ShopSettings
from kami.shop.selectors import logo_dir, shop_settings_get
from kami.shop.services import LOGO_MAX_BYTES, shop_settings_update

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def fresh_cache():
    cache.clear()  # the settings are cached; the database is rolled back between tests
    yield
    cache.clear()


def picture(fmt: str = "PNG", size=(64, 32), color=(200, 30, 30)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, color).save(out, fmt)
    return out.getvalue()


def test_the_name_defaults_to_kami_shop_name(settings):
    settings.KAMI_SHOP_NAME = "Env Shop"
    shop = shop_settings_get()
    assert (shop.name, shop.logo, shop.notice, shop.footer) == ("Env Shop", "", "", "")


def test_an_update_is_stored_audited_and_seen_at_once():
    # given the settings were read (and so cached)
    shop_settings_get()
    # when
    shop = shop_settings_update(actor="alice", ip="203.0.113.9", name="  Card Corner ", notice="Closed on Sunday",
                                footer="support@example.com")
    # then the next read sees the change, and one audit row says who changed what
    assert shop_settings_get() == shop
    assert (shop.name, shop.notice, shop.footer) == ("Card Corner", "Closed on Sunday", "support@example.com")
    row = AuditLog.objects.get(action="shop.settings_update")
    assert (row.actor, row.ip) == ("alice", "203.0.113.9")
    assert row.detail["changed"] == {"name": "Card Corner", "notice": "Closed on Sunday", "footer": "support@example.com"}
    assert ShopSettings.objects.get().updated_by == "alice"


def test_an_update_that_changes_nothing_writes_no_audit_row():
    shop_settings_update(actor="alice", name="Same")
    shop_settings_update(actor="bob", name="Same")
    assert AuditLog.objects.filter(action="shop.settings_update").count() == 1


def test_reads_are_served_from_the_cache():
    shop_settings_update(actor="alice", name="Cached")
    shop_settings_get()
    with CaptureQueriesContext(connection) as queries:
        for _ in range(5):
            assert shop_settings_get().name == "Cached"
    assert len(queries) == 0


def test_bad_fields_are_refused_together_with_clear_messages_and_nothing_changes():
    with pytest.raises(BadInput) as refused:
        shop_settings_update(actor="alice", name="x" * 81, notice_format="html", footer="a\u0007b", colour="red",
                             notice="fine")
    fields = refused.value.details["fields"]
    assert set(fields) == {"name", "notice_format", "footer", "colour"}
    assert "at most 80 characters" in fields["name"] and "'markdown'" in fields["notice_format"]
    assert "unknown setting" in fields["colour"] and "name:" in str(refused.value)
    assert not ShopSettings.objects.exists() and not AuditLog.objects.exists()


def test_a_non_text_value_is_refused():
    with pytest.raises(BadInput, match="name: expected text, got int"):
        shop_settings_update(actor="alice", name=42)


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "GIF", "WEBP"])
def test_a_logo_is_redrawn_as_a_png_that_fits_the_box(fmt):
    # when a big picture is uploaded (as a file, the way a form hands it over)
    shop = shop_settings_update(actor="alice", logo=io.BytesIO(picture(fmt, size=(1600, 400))))
    # then a PNG of ours is stored in the data dir, scaled down
    stored = logo_dir() / shop.logo
    with Image.open(stored) as image:
        assert image.format == "PNG" and image.size == (512, 128)


@pytest.mark.parametrize("data, message", [
    (b"", "the file is empty"),
    (b"<svg xmlns='http://www.w3.org/2000/svg'><script>alert(1)</script></svg>", "not a picture Kami can read"),
    (b"GIF89a" + b"\x00" * 20, "not a picture Kami can read"),
    (b"\x89PNG" + b"\x00" * LOGO_MAX_BYTES, "larger than 1024 KB"),
])
def test_a_logo_that_is_not_a_usable_picture_is_refused(data, message):
    with pytest.raises(BadInput, match=message) as refused:
        shop_settings_update(actor="alice", logo=data)
    assert "logo" in refused.value.details["fields"]


def test_a_picture_in_another_format_is_refused_by_name():
    out = io.BytesIO()
    Image.new("RGB", (10, 10)).save(out, "BMP")
    with pytest.raises(BadInput, match="BMP pictures are not accepted; use PNG, JPEG, GIF or WebP"):
        shop_settings_update(actor="alice", logo=out.getvalue())


def test_a_huge_picture_is_refused_before_it_is_decoded():
    with pytest.raises(BadInput, match="5000×10 pixels"):
        shop_settings_update(actor="alice", logo=picture("PNG", size=(5000, 10)))


def test_the_logo_can_be_removed():
    shop_settings_update(actor="alice", logo=picture())
    assert shop_settings_update(actor="alice", logo_remove=True).logo == ""
    with pytest.raises(BadInput, match="not both"):
        shop_settings_update(actor="alice", logo=picture(), logo_remove=True)


def test_the_logo_is_served_as_a_png_with_a_locked_down_policy(client):
    shop = shop_settings_update(actor="alice", logo=picture())
    response = client.get(f"/shop/logo/{shop.logo}")
    assert response.status_code == 200 and response["Content-Type"] == "image/png"
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Content-Security-Policy"] == "default-src 'none'; sandbox"
    assert b"".join(response.streaming_content) == (logo_dir() / shop.logo).read_bytes()
    assert client.get("/shop/logo/logo-0000000000000000.png").status_code == 404
    assert client.get("/shop/logo/..%2Fsecret_key").status_code == 404
    assert client.get("/shop/logo/secret_key").status_code == 404


def test_every_page_shows_the_name_logo_and_footer_and_home_and_product_the_notice(client, make_product):
    # given
    make_product("gift", name="Gift card")
    shop = shop_settings_update(actor="alice", name="Card Corner", logo=picture(), notice="Back on <Monday>",
                                footer="Mail us: help@example.com")
    # when
    pages = {path: client.get(path).content.decode() for path in ("/", "/p/gift", "/lookup", "/orders/recent")}
    # then
    for path, html in pages.items():
        assert "<title>" in html and "Card Corner" in html, path
        assert f'src="/shop/logo/{shop.logo}"' in html and "Mail us: help@example.com" in html, path
    for path in ("/", "/p/gift"):
        assert "Back on &lt;Monday&gt;" in pages[path] and 'class="shop-notice plain"' in pages[path]
    assert "shop-notice" not in pages["/lookup"]


def test_a_markdown_notice_is_sanitised(client):
    shop_settings_update(actor="alice", notice_format="markdown",
                         notice="**Sale** [here](https://shop.example/) <script>alert(1)</script> [x](javascript:alert(1))")
    html = client.get("/").content.decode()
    assert "<strong>Sale</strong>" in html and 'href="https://shop.example/"' in html
    assert "<script>alert" not in html and "javascript:" not in html


def test_the_cli_shows_and_sets_the_settings(tmp_path, capsys, settings):
    # given
    settings.KAMI_SHOP_NAME = "Env Shop"
    logo = tmp_path / "logo.png"
    logo.write_bytes(picture())
    notice = tmp_path / "notice.md"
    notice.write_text("Line one\nLine two", encoding="utf-8")
    # when
    call_command("shop", "show")
    shown = capsys.readouterr().out
    call_command("shop", "set", "name=小卖部", f"notice=@{notice}", "notice_format=markdown", "footer=Hi",
                 f"logo=@{logo}")
    changed = capsys.readouterr().out
    # then
    assert "name: Env Shop  (KAMI_SHOP_NAME" in shown
    assert "name: 小卖部" in changed and "notice (markdown): Line one\nLine two" in changed and "footer: Hi" in changed
    shop = shop_settings_get()
    assert shop.logo and str(logo_dir() / shop.logo) in changed
    assert AuditLog.objects.get(action="shop.settings_update").actor == "cli"
    # and logo= removes the logo, name= goes back to the environment's name
    call_command("shop", "set", "logo=", "name=")
    assert (shop_settings_get().logo, shop_settings_get().name) == ("", "Env Shop")


@pytest.mark.parametrize("args, message", [
    (["colour=red"], "KEY one of name, notice, notice_format, footer, logo"),
    (["logo=logo.png"], "logo=@path"),
    (["logo=@/nonexistent/logo.png"], "cannot read"),
    (["name=" + "x" * 81], "name: at most 80 characters"),
    (["name=a", "name=b"], "given twice"),
])
def test_the_cli_refuses_bad_input_with_exit_status_2(args, message):
    with pytest.raises(CommandError, match=message) as refused:
        call_command("shop", "set", *args)
    assert refused.value.returncode == 2
