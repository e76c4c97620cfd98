"""The back office: Django's admin on a site of our own, at KAMI_ADMIN_PATH, open only to staff
who signed in fully (password, and the TOTP code wherever a device exists or is required)."""
from __future__ import annotations

from django.contrib import admin
from django.http import HttpResponseRedirect
from django.urls import path, reverse
from django.utils.translation import gettext_lazy as _

from kami.backoffice import views
from kami.backoffice.auth import LoginForm, fully_signed_in, must_enrol
from kami.staff.roles import role_of
from kami.shop.selectors import shop_settings_get


class KamiAdminSite(admin.AdminSite):
    site_title = _("Kami back office")
    index_title = _("Back office")
    login_form = LoginForm
    login_template = "backoffice/login.html"
    enable_nav_sidebar = True

    @property
    def site_header(self):
        return shop_settings_get().name  # what the merchant named the shop, as buyers see it

    def has_permission(self, request) -> bool:
        return fully_signed_in(request.user)

    def login(self, request, extra_context=None):
        # Signed in with a password but not enrolled yet (owners must be): enrolment first.
        if must_enrol(request.user):
            return HttpResponseRedirect(reverse("admin:totp_setup", current_app=self.name))
        response = super().login(request, extra_context)
        if request.method == "POST" and must_enrol(request.user):
            return HttpResponseRedirect(reverse("admin:totp_setup", current_app=self.name))
        return response

    def each_context(self, request):
        context = super().each_context(request)
        role = role_of(request.user)
        context["kami_role"] = role.value if role else ""
        return context

    def get_urls(self):
        return [
            path("totp/setup/", lambda request: views.totp_setup(request, self), name="totp_setup"),
            path("setup/<str:token>/", lambda request, token: views.owner_setup(request, token, self),
                 name="owner_setup"),
            *self.extra_urls(),
            *super().get_urls(),
        ]

    def extra_urls(self) -> list:
        """Pages of the back office that are not a model's (dashboard, imports…): each module
        adds its own through `register_view`."""
        return [path(route, self.admin_view(view), name=name) for route, view, name in self._views]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._views: list = []

    def register_view(self, route: str, view, name: str) -> None:
        self._views.append((route, view, name))


site = KamiAdminSite(name="admin")
