"""The back office's own pages around Django's admin: two-factor enrolment, the first owner's
one-time setup link, the lockout page."""
from __future__ import annotations

import base64

import segno
from django import forms
from django.conf import settings
from django.contrib.auth import login as auth_login
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.cache import never_cache
from django_otp import login as otp_login
from django_otp.plugins.otp_totp.models import TOTPDevice

from kami.audit.services import audit_record
from kami.backoffice.auth import client_ip, totp_device_of
from kami.core.errors import BadInput, Conflict
from kami.shop.selectors import shop_settings_get
from kami.staff.roles import Role, owners_exist, staff_create
from kami.staff.setup_link import setup_token_ok

SESSION_PENDING_DEVICE = "kami_totp_pending"


class TokenForm(forms.Form):
    token = forms.CharField(label=gettext_lazy("6-digit code"), max_length=8,
                            widget=forms.TextInput(attrs={"autocomplete": "one-time-code", "inputmode": "numeric",
                                                          "autofocus": True}))


class OwnerForm(forms.Form):
    username = forms.CharField(label=gettext_lazy("Username"), max_length=150)
    email = forms.EmailField(label=gettext_lazy("Email"), help_text=gettext_lazy("Alerts can go here."))
    password = forms.CharField(label=gettext_lazy("Password"), widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}))
    password2 = forms.CharField(label=gettext_lazy("Password again"), widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}))

    def clean(self):
        cleaned = super().clean()
        if cleaned.get("password") and cleaned.get("password") != cleaned.get("password2"):
            raise forms.ValidationError(_("The two passwords differ."))
        return cleaned


def _pending_device(request: HttpRequest) -> TOTPDevice:
    """The unconfirmed device being enrolled in this session (made once, reused on reload)."""
    device = TOTPDevice.objects.filter(pk=request.session.get(SESSION_PENDING_DEVICE), user=request.user,
                                       confirmed=False).first()
    if device is None:
        device = TOTPDevice.objects.create(user=request.user, name="authenticator", confirmed=False)
        request.session[SESSION_PENDING_DEVICE] = device.pk
    return device


@never_cache
def totp_setup(request: HttpRequest, site) -> HttpResponse:
    user = request.user
    if not (user.is_authenticated and user.is_active and user.is_staff):
        return HttpResponseRedirect(reverse("admin:login", current_app=site.name))
    if totp_device_of(user) is not None:
        return HttpResponseRedirect(reverse("admin:index", current_app=site.name))
    device = _pending_device(request)
    form = TokenForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        if device.verify_token(form.cleaned_data["token"].strip().replace(" ", "")):
            device.confirmed = True
            device.save(update_fields=["confirmed"])
            TOTPDevice.objects.filter(user=user, confirmed=False).delete()
            request.session.pop(SESSION_PENDING_DEVICE, None)
            otp_login(request, device)
            audit_record(actor=user.get_username(), action="totp_enrol", obj_type="user", obj_id=user.pk,
                         ip=client_ip(request) or "")
            return HttpResponseRedirect(reverse("admin:index", current_app=site.name))
        form.add_error("token", _("That code does not match. Check the phone's clock and try the newest code."))
    secret = base64.b32encode(device.bin_key).decode().rstrip("=")
    qr = segno.make(device.config_url, error="m")
    context = {**site.each_context(request), "title": _("Set up two-factor sign-in"), "form": form, "secret": secret,
               "qr_data_uri": qr.svg_data_uri(scale=5), "required": user.is_superuser}
    return render(request, "backoffice/totp_setup.html", context)


@never_cache
def owner_setup(request: HttpRequest, token: str, site) -> HttpResponse:
    context = {**site.each_context(request), "title": _("Create the shop owner's account")}
    if owners_exist() or not setup_token_ok(token):
        return render(request, "backoffice/link_dead.html",
                      {**context, "title": _("This setup link no longer works")}, status=404)
    form = OwnerForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            user = staff_create(username=form.cleaned_data["username"], email=form.cleaned_data["email"],
                                password=form.cleaned_data["password"], role=Role.OWNER, actor="setup-link",
                                ip=client_ip(request) or "")
        except (BadInput, Conflict) as exc:
            form.add_error(None, str(exc))
        else:
            auth_login(request, user, backend="django.contrib.auth.backends.ModelBackend")
            return HttpResponseRedirect(reverse("admin:totp_setup", current_app=site.name))
    return render(request, "backoffice/owner_setup.html", {**context, "form": form})


def locked_out(request: HttpRequest, credentials: dict | None = None, *args, **kwargs) -> HttpResponse:
    minutes = int(settings.AXES_COOLOFF_TIME.total_seconds() // 60)
    return render(request, "backoffice/locked_out.html",
                  {"minutes": minutes, "title": _("Too many failed sign-ins"), "site_header": shop_settings_get().name},
                  status=429)
