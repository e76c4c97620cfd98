"""A merchant's first minutes in the back office, in a real browser: the one-time link `kami demo`
prints creates the owner's account, two-factor enrolment follows (QR code and secret, then a
code from the "phone"), and the back office opens. Screenshots: test-output/e2e/backoffice/."""
from __future__ import annotations

import base64

import pytest
from django_otp.oath import totp

from kami.staff.setup_link import setup_link_make
from tests.backoffice.staffing import PASSWORD
from tests.e2e.chromium import BACKOFFICE_SHOTS as SHOTS

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.sqlite_only]


def phone_code(secret: str) -> str:
    """What an authenticator app shows for the secret printed on the enrolment page."""
    key = base64.b32decode(secret + "=" * (-len(secret) % 8))
    return f"{totp(key):06d}"


def test_the_setup_link_creates_the_owner_and_enrols_two_factor(browser, live_server, settings):  # noqa: F811
    settings.KAMI_BASE_URL = live_server.url
    SHOTS.mkdir(parents=True, exist_ok=True)
    page = browser.new_context(locale="zh-CN", viewport={"width": 390, "height": 844}).new_page()
    # given the link `kami demo` prints
    page.goto(setup_link_make())
    page.screenshot(path=str(SHOTS / "setup-1-owner-form.png"), full_page=True)
    # when the merchant creates the owner's account
    page.fill("input[name=username]", "boss")
    page.fill("input[name=email]", "boss@shop.test")
    page.fill("input[name=password]", PASSWORD)
    page.fill("input[name=password2]", PASSWORD)
    page.click("input[type=submit]")
    # then two-factor enrolment comes first, with a QR code drawn by the server
    page.wait_for_selector("#totp-secret")
    assert page.locator("img[src^='data:image/svg+xml']").count() == 1
    page.screenshot(path=str(SHOTS / "setup-2-two-factor.png"), full_page=True)
    secret = page.inner_text("#totp-secret").strip()
    page.fill("input[name=token]", phone_code(secret))
    page.click("input[type=submit]")
    # and then the back office opens, in the browser's language
    page.wait_for_selector("#user-tools")
    assert "boss" in page.inner_text("#user-tools").lower()
    page.screenshot(path=str(SHOTS / "setup-3-back-office.png"), full_page=True)
    # and the link is dead for anyone else now
    other = browser.new_context().new_page()
    response = other.goto(setup_link_make())
    assert response.status == 404
