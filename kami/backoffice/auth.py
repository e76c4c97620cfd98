"""Signing staff in: password (with django-axes lockout), then a TOTP code for anyone who has
enrolled a device; every staff member (owners only with KAMI_ADMIN_TOTP=owners) must enrol
before they see anything."""
from __future__ import annotations

from django import forms
from django.conf import settings
from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth.signals import user_login_failed
from django.utils.translation import gettext_lazy as _
from django_otp.plugins.otp_totp.models import TOTPDevice

from kami.core import net


def client_ip(request) -> str | None:
    """AXES_CLIENT_IP_CALLABLE: kami.core.net's rule (forwarded headers from trusted proxies only)."""
    return net.client_ip(request) or None


def totp_device_of(user) -> TOTPDevice | None:
    if not getattr(user, "pk", None):
        return None
    return TOTPDevice.objects.filter(user=user, confirmed=True).order_by("id").first()


def must_enrol(user) -> bool:
    """Staff without a confirmed device: everyone by default (KAMI_ADMIN_TOTP=all), owners only
    with KAMI_ADMIN_TOTP=owners."""
    if not (user.is_authenticated and user.is_active and user.is_staff):
        return False
    required = user.is_superuser or settings.KAMI_ADMIN_TOTP != "owners"
    return required and totp_device_of(user) is None


def fully_signed_in(user) -> bool:
    """Password done, and the second factor done wherever the user has (or must have) one."""
    if not (user.is_authenticated and user.is_active and user.is_staff):
        return False
    if must_enrol(user):
        return False
    return totp_device_of(user) is None or user.is_verified()


class LoginForm(AdminAuthenticationForm):
    otp_token = forms.CharField(
        label=_("Two-factor code"), required=False, max_length=8,
        widget=forms.TextInput(attrs={"autocomplete": "one-time-code", "inputmode": "numeric"}),
        help_text=_("The 6 digits from your authenticator app, if you have set one up."))

    error_messages = {
        **AdminAuthenticationForm.error_messages,
        "otp_required": _("Enter the 6-digit code from your authenticator app."),
        "otp_invalid": _("That two-factor code is wrong or expired. Codes change every 30 seconds."),
        "otp_throttled": _("Too many wrong codes. Wait a minute and try again."),
    }

    def clean(self):
        cleaned = super().clean()  # the password, through django-axes
        user = self.get_user()
        device = totp_device_of(user)
        if device is None:
            return cleaned
        token = (cleaned.get("otp_token") or "").strip().replace(" ", "")
        if not token:
            raise forms.ValidationError(self.error_messages["otp_required"], code="otp_required")
        allowed, _extra = device.verify_is_allowed()
        if not allowed or not device.verify_token(token):
            # A wrong (or throttled) code counts as a failed login for the lockout, like a wrong password.
            user_login_failed.send(sender=__name__, credentials={"username": user.get_username()},
                                   request=self.request)
            code = "otp_invalid" if allowed else "otp_throttled"
            raise forms.ValidationError(self.error_messages[code], code=code)
        user.otp_device = device  # django-otp marks the session verified when login() runs
        return cleaned
