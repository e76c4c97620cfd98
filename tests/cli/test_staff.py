"""`kami staff`: accounts from the command line, never a default one, passwords never in argv."""
from __future__ import annotations

import io

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django_otp.plugins.otp_totp.models import TOTPDevice

from kami.audit.models import AuditLog
from kami.staff.roles import Role, role_of
from tests.backoffice.staffing import PASSWORD, make_staff

pytestmark = pytest.mark.django_db


def run(*args, stdin: str = "") -> str:
    out = io.StringIO()
    old = __import__("sys").stdin
    __import__("sys").stdin = io.StringIO(stdin)
    try:
        call_command("staff", *args, stdout=out)
    finally:
        __import__("sys").stdin = old
    return out.getvalue()


def test_add_owner_then_operator_with_passwords_from_stdin():
    out = run("add", "boss", "--role", "owner", "--email", "boss@shop.test", "--password-stdin", stdin=PASSWORD + "\n")
    assert "boss is now owner" in out and "two-factor" in out
    run("add", "olga", "--role", "operator", "--password-stdin", stdin=PASSWORD + "\n")
    from django.contrib.auth import get_user_model
    users = {u.username: role_of(u) for u in get_user_model().objects.all()}
    assert users == {"boss": Role.OWNER, "olga": Role.OPERATOR}
    assert AuditLog.objects.filter(action="staff_create").count() == 2


def test_weak_password_bad_role_and_duplicate_are_refused_clearly():
    with pytest.raises(CommandError, match="password"):
        run("add", "boss", "--role", "owner", "--password-stdin", stdin="123\n")
    with pytest.raises(CommandError, match="role 'king' is not one of: owner, operator, support"):
        run("add", "boss", "--role", "king", "--password-stdin", stdin=PASSWORD + "\n")
    run("add", "boss", "--role", "owner", "--password-stdin", stdin=PASSWORD + "\n")
    with pytest.raises(CommandError, match="already exists"):
        run("add", "BOSS", "--role", "support", "--password-stdin", stdin=PASSWORD + "\n")


def test_setup_link_only_while_no_owner_exists():
    assert "/setup/" in run("setup-link")
    make_staff("owner", "boss")
    with pytest.raises(CommandError, match="an owner account exists already"):
        run("setup-link")


def test_role_change_list_and_two_factor_reset():
    user = make_staff("owner", "boss")
    make_staff("support", "sam")
    run("role", "sam", "operator")
    listing = run("list")
    assert "sam" in listing and "operator" in listing and "boss" in listing
    out = run("reset-2fa", "boss")
    assert "1 authenticator(s) removed" in out
    assert not TOTPDevice.objects.filter(user=user).exists()
    assert AuditLog.objects.filter(action="totp_reset").exists()
    with pytest.raises(CommandError, match="no staff account named 'nobody'"):
        run("role", "nobody", "support")
