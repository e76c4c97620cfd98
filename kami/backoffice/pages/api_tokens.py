"""Merchant API tokens (owners only): the list with scopes and last use, a new token shown once,
revocation. Made and revoked by kami.api.tokens (the same service as `kami api token`), which
stores only the token's hash and writes the audit rows under the staff member's name.

The new token is shown in the answer to the POST that made it, never stored in the session or a
message (those live in cookies and the database): the page says so, and a reload shows it no more.
"""
from __future__ import annotations

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.translation import gettext as _
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods, require_POST

from kami.api.models import SCOPES
from kami.api.tokens import NewToken, api_token_create, api_token_revoke, api_tokens_list
from kami.backoffice.perms import actor_of, ip_of
from kami.backoffice.site import site
from kami.core.errors import BadInput, NotFound
from kami.staff.roles import Role, role_of


def may_manage_tokens(user) -> bool:
    """Owners only: a token acts for the whole shop (stock, refunds), like an owner would."""
    return role_of(user) is Role.OWNER


def _require_owner(request) -> None:
    if not may_manage_tokens(request.user):
        raise PermissionDenied("only an owner may manage API tokens")


def scope_labels() -> dict[str, str]:
    """What each scope allows, as the page explains it (docs/api.md has the endpoints)."""
    labels = {
        "read": _("read products, stock counts, key fingerprints and orders"),
        "stock": _("import, generate and void keys; upload key files"),
        "orders": _("resend an order's keys; replace a bad key"),
        "refunds": _("refund orders"),
        "products": _("create products and change their price, limits and state"),
        "webhooks": _("manage webhook endpoints"),
    }
    return {scope: labels.get(scope, scope) for scope in SCOPES}


def _render(request, *, made: NewToken | None = None, values: dict | None = None, error: str = "", status: int = 200):
    tokens = api_tokens_list()
    context = {
        **site.each_context(request),
        "title": _("API tokens"),
        "active": [t for t in tokens if t.revoked_at is None],
        "revoked": [t for t in tokens if t.revoked_at is not None],
        "scopes": list(scope_labels().items()),
        "made": made,
        "values": values or {"name": "", "scopes": ["read"]},
        "error": error,
    }
    return TemplateResponse(request, "backoffice/api_tokens/list.html", context, status=status)


@never_cache
@require_http_methods(["GET", "POST"])
def api_tokens_page(request):
    """GET: the list and the form. POST: make a token and show it, this once."""
    _require_owner(request)
    if request.method == "GET":
        return _render(request)
    values = {"name": request.POST.get("name", "").strip(), "scopes": request.POST.getlist("scopes")}
    try:
        made = api_token_create(name=values["name"], scopes=values["scopes"], actor=actor_of(request),
                                ip=ip_of(request))
    except BadInput as exc:
        return _render(request, values=values, error=str(exc), status=400)
    return _render(request, made=made)


@require_POST
def api_token_revoke_view(request):
    _require_owner(request)
    name = request.POST.get("name", "")
    try:
        api_token_revoke(name=name, actor=actor_of(request), ip=ip_of(request))
    except NotFound as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, _("Token %(name)s revoked: requests with it are refused from now on.")
                         % {"name": name})
    return HttpResponseRedirect(reverse("admin:api_tokens"))


ROUTES = [
    ("api-tokens/", api_tokens_page, "api_tokens"),
    ("api-tokens/revoke/", api_token_revoke_view, "api_token_revoke"),
]
