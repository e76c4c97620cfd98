"""Payment gateways (manage_gateways; owners only): settings, write-only secrets, enable or
disable, the notify URL to paste into the gateway, and the offline check.

Secrets are never put in a page: the page says only "set" / "not set" per secret, the form's
secret inputs are always empty, and an input left empty keeps the stored value.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from django.contrib import messages
from django.http import HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET, require_POST

from kami.backoffice.perms import actor_of, ip_of, require
from kami.backoffice.site import site
from kami.core.errors import BadInput, Conflict, NotFound
from kami.payments.selectors import GatewayOverview, gateway_overview, gateways_overview
from kami.payments.services import gateway_check, gateway_configure

MULTILINE_SUFFIXES = ("private_key", "public_key")  # PEM blocks: a textarea, not a one-line input


@dataclass
class GatewayRow:
    """The overview (kami.payments.selectors) shaped for the form, with the offline check."""

    name: str
    label: str
    enabled: bool  # as stored
    live: bool  # what buyers get
    notify_url: str
    unreadable: bool  # the secrets' data key is missing from the keyring
    settings: list[tuple[str, str, bool]]  # (name, value, required)
    secrets: list[tuple[str, bool, bool, bool]]  # (name, is set, required, multiline)
    check_ok: bool | None = None  # None: not configured yet, nothing to check
    check_lines: list[str] = field(default_factory=list)


def gateway_check_offline(name: str) -> tuple[bool, list[str]]:
    """The offline check (kami.payments.services.gateway_check) as (ok, problems)."""
    try:
        problems = gateway_check(name=name)
    except Exception as exc:  # a stored key the gateway's parser chokes on: report, do not crash the page
        return False, [f"{exc.__class__.__name__}: the stored settings could not be checked"]
    return not problems, problems


def _row(g: GatewayOverview) -> GatewayRow:
    row = GatewayRow(name=g.name, label=g.label, enabled=g.enabled, live=g.live, notify_url=g.notify_url,
                     unreadable=g.unreadable,
                     settings=[(k, g.config.get(k, ""), k in g.required_config) for k in g.setting_names],
                     secrets=[(s.name, s.is_set, s.required, s.name.endswith(MULTILINE_SUFFIXES)) for s in g.secrets])
    if g.configured and not g.unreadable:
        row.check_ok, row.check_lines = gateway_check_offline(g.name)
    return row


@require_GET
def gateways_page(request):
    require(request, "manage_gateways")
    context = {
        **site.each_context(request),
        "title": _("Payment gateways"),
        "gateways": [_row(g) for g in gateways_overview()],
    }
    return TemplateResponse(request, "backoffice/gateways/list.html", context)


def changes_from(post, *, name: str) -> tuple[dict[str, str], bool | None]:
    """What the form changes: settings whose value differs, secrets typed in (empty keeps the
    stored one), and the enabled switch when it moved."""
    g = gateway_overview(name)
    values = {}
    for key in g.setting_names:
        posted = post.get(f"setting-{key}")
        if posted is not None and posted.strip() != g.config.get(key, ""):
            values[key] = posted.strip()
    for secret in g.secrets:
        posted = (post.get(f"secret-{secret.name}") or "").strip()
        if posted:
            values[secret.name] = posted
    wanted = post.get("enabled") == "on"
    enable = wanted if wanted != g.enabled else None
    return values, enable


@require_POST
def gateway_save(request, name: str):
    require(request, "manage_gateways")
    try:
        values, enable = changes_from(request.POST, name=name)
        if not values and enable is None:
            messages.info(request, _("%(name)s: nothing changed.") % {"name": name})
        else:
            account = gateway_configure(name=name, values=values, enable=enable, actor=actor_of(request),
                                        ip=ip_of(request))
            state = _("enabled") if account.enabled else _("disabled")
            messages.success(request, _("%(name)s saved (%(state)s).") % {"name": name, "state": state})
    except (BadInput, NotFound, Conflict) as exc:
        messages.error(request, str(exc))
    return HttpResponseRedirect(f"{reverse('admin:gateways')}#gateway-{name}")
