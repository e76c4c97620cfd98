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
from kami.fulfilment.checkout import notify_url
from kami.payments.models import GatewayAccount
from kami.payments.registry import GATEWAYS, gateway_class, gateways_enabled, secrets_decrypt
from kami.payments.services import gateway_check, gateway_configure

MULTILINE_SUFFIXES = ("private_key", "public_key")  # PEM blocks: a textarea, not a one-line input


@dataclass
class GatewayRow:
    name: str
    label: str
    configured: bool
    enabled: bool  # as stored
    live: bool  # what buyers get: the registry's rule (the sandbox is off in production)
    settings: list[tuple[str, str, bool]]  # (name, value, required)
    secrets: list[tuple[str, bool, bool, bool]] = field(default_factory=list)  # (name, is set, required, multiline)
    unreadable: bool = False  # the secrets' data key is missing from the keyring
    notify_url: str = ""
    check_ok: bool | None = None  # None: not configured yet, nothing to check
    check_lines: list[str] = field(default_factory=list)


def _secret_names(cls) -> tuple[str, ...]:
    return (*cls.required_secrets, *getattr(cls, "optional_secrets", ()))


def _setting_names(cls, config: dict) -> list[str]:
    known = [*cls.required_config, *(getattr(cls, "optional_config", None) or ())]
    return known + sorted(set(config) - set(known))


def gateway_check_offline(name: str) -> tuple[bool, list[str]]:
    """The offline check (kami.payments.services.gateway_check) as (ok, problems)."""
    try:
        problems = gateway_check(name=name)
    except Exception as exc:  # a stored key the gateway's parser chokes on: report, do not crash the page
        return False, [f"{exc.__class__.__name__}: the stored settings could not be checked"]
    return not problems, problems


def _row(name: str, account: GatewayAccount | None, live: set[str]) -> GatewayRow:
    cls = gateway_class(name)
    config = dict(account.config) if account else {}
    row = GatewayRow(name=name, label=str(getattr(cls, "label", name)), configured=account is not None,
                     enabled=bool(account and account.enabled), live=name in live,
                     settings=[(k, str(config.get(k, "")), k in cls.required_config) for k in _setting_names(cls, config)],
                     notify_url=notify_url(name))
    try:
        stored = secrets_decrypt(account) if account else {}
    except Exception:  # a data key missing from the keyring: say so, as `kami gateway list` does
        stored, row.unreadable = {}, True
    row.secrets = [(k, bool(stored.get(k)), k in cls.required_secrets, k.endswith(MULTILINE_SUFFIXES))
                   for k in _secret_names(cls)]
    del stored  # secret values go no further than the set / not-set flags above
    if account is not None and not row.unreadable:
        row.check_ok, row.check_lines = gateway_check_offline(name)
    return row


@require_GET
def gateways_page(request):
    require(request, "manage_gateways")
    accounts = {a.name: a for a in GatewayAccount.objects.filter(name__in=GATEWAYS)}
    live = set(gateways_enabled())
    context = {
        **site.each_context(request),
        "title": _("Payment gateways"),
        "gateways": [_row(name, accounts.get(name), live) for name in sorted(GATEWAYS)],
    }
    return TemplateResponse(request, "backoffice/gateways/list.html", context)


def changes_from(post, *, name: str) -> tuple[dict[str, str], bool | None]:
    """What the form changes: settings whose value differs, secrets typed in (empty keeps the
    stored one), and the enabled switch when it moved."""
    cls = gateway_class(name)
    account = GatewayAccount.objects.filter(name=name).first()
    config = dict(account.config) if account else {}
    values = {}
    for key in _setting_names(cls, config):
        posted = post.get(f"setting-{key}")
        if posted is not None and posted.strip() != str(config.get(key, "")):
            values[key] = posted.strip()
    for key in _secret_names(cls):
        posted = (post.get(f"secret-{key}") or "").strip()
        if posted:
            values[key] = posted
    wanted = post.get("enabled") == "on"
    enable = wanted if wanted != bool(account and account.enabled) else None
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
