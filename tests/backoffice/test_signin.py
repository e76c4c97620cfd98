"""Signing in to the back office: no default account, a path nobody guesses, TOTP for owners,
lockout after repeated failures, sessions that end."""
from __future__ import annotations

import re
import time

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.test import Client
from django_otp.oath import totp
from django_otp.plugins.otp_totp.models import TOTPDevice

from kami.audit.models import AuditLog
from kami.staff.policy import totp_policy_warning
from kami.staff.setup_link import setup_link_make
from tests.backoffice.staffing import PASSWORD, admin_url, code_for, make_staff, sign_in

pytestmark = pytest.mark.django_db


def test_no_default_account_and_no_admin_at_slash_admin():
    # given a freshly migrated shop
    # then nobody can sign in, and /admin/ is not the back office
    assert not get_user_model().objects.exists()
    assert Client().get("/admin/").status_code == 404
    assert settings.KAMI_ADMIN_PATH not in ("admin", "")
    assert Client().get(admin_url()).status_code == 302  # to the login page


def test_generated_admin_path_is_random_and_stable(tmp_path, monkeypatch):
    from kami.core import datadir

    # given two data dirs without KAMI_ADMIN_PATH
    monkeypatch.delenv("KAMI_ADMIN_PATH", raising=False)
    monkeypatch.setenv("KAMI_DATA_DIR", str(tmp_path / "a"))
    first = datadir.admin_path()
    again = datadir.admin_path()
    monkeypatch.setenv("KAMI_DATA_DIR", str(tmp_path / "b"))
    other = datadir.admin_path()
    # then each is unguessable, kept across restarts, private, and differs between shops
    assert re.fullmatch(r"manage-[A-Za-z0-9_-]{12}", first)
    assert first == again and first != other
    assert (tmp_path / "a" / "admin_path").stat().st_mode & 0o077 == 0
    monkeypatch.setenv("KAMI_ADMIN_PATH", "/back-room/")
    assert datadir.admin_path() == "back-room"


def test_setup_link_creates_the_first_owner_once_then_demands_two_factor():
    link = setup_link_make().removeprefix(settings.KAMI_BASE_URL)
    client = Client()
    # when the merchant opens the link and creates the owner
    response = client.post(link, {"username": "boss", "email": "boss@shop.test",
                                  "password": PASSWORD, "password2": PASSWORD})
    # then they are sent to two-factor enrolment, and the back office stays closed until done
    assert response.status_code == 302 and response["Location"].endswith("/totp/setup/")
    owner = get_user_model().objects.get(username="boss")
    assert owner.is_superuser
    assert client.get(admin_url()).status_code == 302
    page = client.get(admin_url("totp/setup/"))
    assert page.status_code == 200 and b"data:image/svg+xml" in page.content
    secret_device = TOTPDevice.objects.get(user=owner, confirmed=False)
    wrong = client.post(admin_url("totp/setup/"), {"token": "000000"})
    assert wrong.status_code == 200 and not TOTPDevice.objects.filter(user=owner, confirmed=True).exists()
    time.sleep(1.1)  # django-otp throttles a device for 2^(failures-1) s after a wrong code
    code = f"{totp(secret_device.bin_key):06d}"
    done = client.post(admin_url("totp/setup/"), {"token": code})
    assert done.status_code == 302
    assert client.get(admin_url()).status_code == 200
    assert AuditLog.objects.filter(action="totp_enrol", actor="boss").exists()
    # and the link now opens nothing, for anyone
    again = Client().post(link, {"username": "mallory", "email": "m@x.test", "password": PASSWORD,
                                 "password2": PASSWORD})
    assert again.status_code == 404 and not get_user_model().objects.filter(username="mallory").exists()


def test_setup_link_refuses_a_forged_token():
    response = Client().get(admin_url("setup/owner:1abcde:forged/"))
    assert response.status_code == 404
    assert b"no longer works" in response.content or "此设置链接已失效".encode() in response.content


def test_owner_without_two_factor_is_sent_to_enrol_not_in():
    owner = make_staff("owner", "solo", totp_device=False)
    client, response = sign_in(owner)
    assert response["Location"].endswith("/totp/setup/")
    assert client.get(admin_url("catalog/product/")).status_code == 302


def test_a_code_is_required_and_checked_once_a_device_exists():
    owner = make_staff("owner", "boss")
    # without a code, or with a wrong one: refused
    _, no_code = sign_in(owner, code="")
    assert no_code.status_code == 200 and b"otp_token" in no_code.content
    _, wrong = sign_in(owner, code="123456" if code_for(owner) != "123456" else "654321")
    assert wrong.status_code == 200
    time.sleep(1.1)  # the device's throttle after one wrong code
    # with the right code: in
    client, right = sign_in(owner)
    assert right.status_code == 302
    assert client.get(admin_url()).status_code == 200


@pytest.mark.parametrize("role", ["operator", "support"])
def test_by_default_every_role_without_a_device_is_sent_to_enrol_not_in(make_product, role):
    # given the default policy, a product, and a staff member who never set up two-factor
    assert settings.KAMI_ADMIN_TOTP == "all"
    product = make_product("gift", name="Gift card")
    user = make_staff(role, f"{role}-nodevice", totp_device=False)
    # when they sign in with the right password
    client, response = sign_in(user)
    # then they are sent to enrolment, and nothing else opens, the product edit page least of all
    assert response.status_code == 302 and response["Location"].endswith("/totp/setup/")
    assert client.get(admin_url()).status_code == 302
    edit = client.get(admin_url(f"catalog/product/{product.pk}/change/"))
    assert edit.status_code == 302 and "/login/" in edit["Location"]
    assert client.get(edit["Location"])["Location"].endswith("/totp/setup/")
    refused = client.post(admin_url(f"catalog/product/{product.pk}/change/"), {"name": "Free", "price": "0.01"})
    assert refused.status_code == 302
    product.refresh_from_db()
    assert product.name == "Gift card"


def test_owners_only_is_an_explicit_opt_out_with_a_warning(settings):
    # given the opt-out
    settings.KAMI_ADMIN_TOTP = "owners"
    operator = make_staff("operator", "op", totp_device=False)
    # when the operator signs in with a password alone, it works, and the start-up warning says why it should not
    client, response = sign_in(operator)
    assert response.status_code == 302
    assert client.get(admin_url()).status_code == 200
    assert "KAMI_ADMIN_TOTP=owners" in totp_policy_warning() and "100 % coupons" in totp_policy_warning()
    settings.KAMI_ADMIN_TOTP = "all"
    assert totp_policy_warning() == ""


def test_lockout_after_repeated_failures_even_with_the_right_password_then():
    operator = make_staff("operator", "op")
    client = Client(REMOTE_ADDR="10.9.9.9")
    for _ in range(settings.AXES_FAILURE_LIMIT):
        sign_in(operator, client, password="wrong password")
    # when the right password comes after the limit
    _, response = sign_in(operator, client)
    # then the account is locked from that address, with a page that says what to do
    assert response.status_code == 429
    assert b"kami axes_reset_username" in response.content
    assert client.get(admin_url()).status_code == 302
    # and another address is not locked out of the same account (the lock is user + address)
    _, elsewhere = sign_in(operator, Client(REMOTE_ADDR="10.8.8.8"))
    assert elsewhere.status_code == 302


def test_wrong_codes_count_towards_the_lockout():
    owner = make_staff("owner", "boss")
    client = Client(REMOTE_ADDR="10.7.7.7")
    bad = "000000" if code_for(owner) != "000000" else "111111"
    for _ in range(settings.AXES_FAILURE_LIMIT):
        sign_in(owner, client, code=bad)
    _, response = sign_in(owner, client)
    assert response.status_code == 429


def test_sessions_end_with_the_browser_and_after_a_working_day():
    assert settings.SESSION_EXPIRE_AT_BROWSER_CLOSE is True
    assert settings.SESSION_COOKIE_AGE <= 12 * 3600


def test_two_factor_for_all_staff_when_the_owner_asks(settings):
    settings.KAMI_ADMIN_TOTP = "all"
    operator = make_staff("operator", "op", totp_device=False)
    client, response = sign_in(operator)
    assert response["Location"].endswith("/totp/setup/")
    assert client.get(admin_url()).status_code == 302
