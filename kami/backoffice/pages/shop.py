"""Shop settings (manage_shop; owners only): name, logo, notice banner and footer, saved through
`kami.shop.services.shop_settings_update`, which validates, re-encodes the logo and audits."""
from __future__ import annotations

from django.contrib import messages
from django.http import HttpResponseNotAllowed, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.translation import gettext as _

from kami.backoffice.perms import actor_of, ip_of, require
from kami.backoffice.site import site
from kami.core.errors import BadInput
from kami.core.models import SINGLETON_ID, ShopSettings
from kami.shop.selectors import shop_settings_get
from kami.shop.services import FOOTER_MAX, NAME_MAX, NOTICE_MAX, shop_settings_update


def _render(request, values: dict, errors: dict, status: int = 200):
    context = {
        **site.each_context(request),
        "title": _("Shop settings"),
        "shop_now": shop_settings_get(),
        "values": values,
        "errors": errors,
        "formats": [("text", _("Plain text")), ("markdown", _("Markdown (a safe subset)"))],
        "limits": {"name": NAME_MAX, "notice": NOTICE_MAX, "footer": FOOTER_MAX},
    }
    return TemplateResponse(request, "backoffice/shop/settings.html", context, status=status)


def _fields(request) -> dict:
    fields = {key: request.POST.get(key, "") for key in ("name", "notice", "notice_format", "footer")}
    if request.FILES.get("logo"):
        fields["logo"] = request.FILES["logo"]
    if request.POST.get("logo_remove") == "on":
        fields["logo_remove"] = True
    return fields


def shop_settings_page(request):
    require(request, "manage_shop")
    if request.method == "GET":
        now = shop_settings_get()
        # The stored name, not the KAMI_SHOP_NAME fallback: saving the form must not pin it.
        stored = ShopSettings.objects.filter(pk=SINGLETON_ID).values_list("name", flat=True).first() or ""
        return _render(request, {"name": stored, "notice": now.notice, "notice_format": now.notice_format,
                                 "footer": now.footer}, {})
    if request.method != "POST":
        return HttpResponseNotAllowed(["GET", "POST"])
    try:
        shop_settings_update(actor=actor_of(request), ip=ip_of(request), **_fields(request))
    except BadInput as exc:
        messages.error(request, str(exc))
        return _render(request, request.POST, exc.details.get("fields", {}), status=400)
    messages.success(request, _("Shop settings saved."))
    return HttpResponseRedirect(reverse("admin:shop_settings"))
