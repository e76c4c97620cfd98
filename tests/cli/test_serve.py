"""`kami serve` warns, before taking money, about settings that break gateways or hide alerts,
and about a back office nobody can sign in to."""
from __future__ import annotations

import pytest

from kami.cli.management.commands.serve import startup_warnings
from tests.backoffice.staffing import make_staff

pytestmark = pytest.mark.django_db


def test_production_over_plain_http_is_warned_about(settings):
    settings.PRODUCTION, settings.KAMI_BASE_URL, settings.KAMI_ADMIN_EMAIL = True, "http://shop.example", ""
    warnings = startup_warnings()
    assert any("must be https" in w for w in warnings) and any("KAMI_ADMIN_EMAIL" in w for w in warnings)


def test_a_shop_without_an_owner_is_told_how_to_make_one(settings):
    settings.PRODUCTION, settings.KAMI_BASE_URL, settings.KAMI_ADMIN_EMAIL = True, "https://shop.example", "me@shop.example"
    assert [w for w in startup_warnings() if "kami staff setup-link" in w]


def test_a_sound_production_setup_and_development_are_quiet(settings):
    make_staff("owner", "boss")
    settings.KAMI_SANDBOX, settings.EMAIL_URL = False, "smtp://mail.example:587"
    settings.PRODUCTION, settings.KAMI_BASE_URL, settings.KAMI_ADMIN_EMAIL = True, "https://shop.example", "me@shop.example"
    assert startup_warnings() == []
    settings.PRODUCTION, settings.KAMI_BASE_URL = False, "http://127.0.0.1:8000"
    assert startup_warnings() == []


def test_the_sandbox_and_file_mail_are_announced_loudly(settings):
    # given a development server started like `kami demo` starts one, without EMAIL_URL
    make_staff("owner", "boss")
    settings.KAMI_SANDBOX, settings.EMAIL_URL = True, ""
    # when
    warnings = startup_warnings()
    # then
    assert any("THE SANDBOX GATEWAY IS ON" in w for w in warnings)
    assert any("EMAIL_URL is not set" in w and "not sent to buyers" in w for w in warnings)


def test_two_factor_for_owners_only_is_warned_about(settings):
    # given a shop that opted out of two-factor for operators and support
    make_staff("owner", "boss")
    settings.KAMI_SANDBOX, settings.EMAIL_URL, settings.KAMI_ADMIN_TOTP = False, "smtp://mail.example:587", "owners"
    # when
    warnings = startup_warnings()
    # then
    assert any("KAMI_ADMIN_TOTP=owners" in w and "refund orders" in w for w in warnings)
