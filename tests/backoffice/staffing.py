"""Staff for back-office tests: real accounts, real TOTP devices, signed in through the real
login form (password, then the code an authenticator app would show)."""
from __future__ import annotations

from django.conf import settings
from django.test import Client
from django_otp.oath import totp
from django_otp.plugins.otp_totp.models import TOTPDevice

from kami.staff.roles import staff_create

PASSWORD = "correct horse battery staple 42"


def admin_url(rest: str = "") -> str:
    return f"/{settings.KAMI_ADMIN_PATH}/{rest}"


def make_staff(role: str, username: str | None = None, *, totp_device: bool = True):
    """An account with `role` and a confirmed TOTP device (every role must have one by default)."""
    user = staff_create(username=username or f"{role}-user", email=f"{role}@shop.test", password=PASSWORD,
                        role=role, actor="test")
    if totp_device:
        TOTPDevice.objects.create(user=user, name="phone", confirmed=True)
    return user


def code_for(user, *, offset: int = 0) -> str:
    device = TOTPDevice.objects.get(user=user, confirmed=True)
    return f"{totp(device.bin_key, step=device.step, t0=device.t0, digits=device.digits, drift=offset):06d}"


def sign_in(user, client: Client | None = None, *, code: str | None = None, password: str = PASSWORD):
    """POST the login form as a browser would; returns (client, response)."""
    client = client or Client(REMOTE_ADDR="10.1.1.1")
    data = {"username": user.get_username(), "password": password, "next": admin_url()}
    if code is None and TOTPDevice.objects.filter(user=user, confirmed=True).exists():
        code = code_for(user)
    if code is not None:
        data["otp_token"] = code
    response = client.post(admin_url("login/"), data)
    return client, response


def signed_in(role: str, username: str | None = None) -> Client:
    user = make_staff(role, username)
    client, response = sign_in(user)
    assert response.status_code == 302, response.content.decode()[:2000]
    return client
