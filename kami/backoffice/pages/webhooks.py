"""Webhook endpoints (manage_shop; owners): list, add, change, enable/disable, rotate the secret,
delete; per endpoint its latest events with every attempt (status, time, answer excerpt), and
redelivery of one event or of all failed ones. Each POST calls one kami.webhooks service.

A new secret is shown once, on the page that answers the POST that made it (no redirect, not
cached); afterwards only "set" is known.
"""
from __future__ import annotations

from django.contrib import messages
from django.http import HttpResponseNotAllowed, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.translation import gettext as _
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_POST

from kami.backoffice.perms import actor_of, ip_of, require
from kami.backoffice.site import site
from kami.core.errors import BadInput, Conflict, NotFound
from kami.webhooks.models import EVENTS
from kami.webhooks.selectors import endpoint_get, endpoints_list, messages_list
from kami.webhooks.services import (
    endpoint_create,
    endpoint_delete,
    endpoint_disable,
    endpoint_enable,
    endpoint_redeliver_failed,
    endpoint_secret_rotate,
    endpoint_update,
    webhook_redeliver,
)

CAPABILITY = "manage_shop"
REFUSED = (BadInput, NotFound, Conflict)


def _context(request, title: str, **extra) -> dict:
    return {**site.each_context(request), "title": title, "all_events": EVENTS, **extra}


def _form(request) -> dict:
    return {"url": request.POST.get("url", ""), "events": request.POST.getlist("events"),
            "description": request.POST.get("description", ""), "include_keys": request.POST.get("include_keys") == "on"}


@never_cache
def webhooks_page(request):
    """GET: the endpoints and the add form. POST: add one, then show its secret once."""
    require(request, CAPABILITY)
    if request.method not in ("GET", "POST"):
        return HttpResponseNotAllowed(["GET", "POST"])
    form = {"url": "", "events": list(EVENTS), "description": "", "include_keys": False}
    if request.method == "POST":
        form = _form(request)
        try:
            made = endpoint_create(actor=actor_of(request), ip=ip_of(request), **form)
        except REFUSED as exc:
            messages.error(request, str(exc))
        else:
            return _secret_page(request, made, _("Webhook endpoint added"))
    return TemplateResponse(request, "backoffice/webhooks/list.html",
                            _context(request, _("Webhooks"), endpoints=list(endpoints_list()), form=form))


def _secret_page(request, made, title: str):
    return TemplateResponse(request, "backoffice/webhooks/secret.html",
                            _context(request, title, endpoint=made.endpoint, secret=made.secret))


@never_cache
def webhook_detail(request, endpoint_id: int):
    """GET: one endpoint, its settings form and its latest events. POST: save the settings."""
    require(request, CAPABILITY)
    if request.method not in ("GET", "POST"):
        return HttpResponseNotAllowed(["GET", "POST"])
    try:
        endpoint = endpoint_get(endpoint_id=endpoint_id)
    except NotFound as exc:
        messages.error(request, str(exc))
        return HttpResponseRedirect(reverse("admin:webhooks"))
    if request.method == "POST":
        try:
            endpoint_update(endpoint_id=endpoint_id, actor=actor_of(request), ip=ip_of(request), **_form(request))
        except REFUSED as exc:
            messages.error(request, str(exc))
        else:
            messages.success(request, _("Webhook endpoint #%(id)d saved.") % {"id": endpoint_id})
        return _back(endpoint_id)
    rows = messages_list(endpoint_id=endpoint_id)
    return TemplateResponse(request, "backoffice/webhooks/detail.html",
                            _context(request, _("Webhook endpoint #%(id)d") % {"id": endpoint_id}, endpoint=endpoint,
                                     rows=rows, can_redeliver=("failed", "manual", "pending")))


def _back(endpoint_id: int | None = None) -> HttpResponseRedirect:
    if endpoint_id is None:
        return HttpResponseRedirect(reverse("admin:webhooks"))
    return HttpResponseRedirect(reverse("admin:webhook_detail", args=[endpoint_id]))


def _act(request, endpoint_id: int, action, done: str):
    require(request, CAPABILITY)
    try:
        action()
    except REFUSED as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, done)
    return _back(endpoint_id)


@require_POST
def webhook_enable(request, endpoint_id: int):
    return _act(request, endpoint_id, lambda: endpoint_enable(endpoint_id=endpoint_id, actor=actor_of(request),
                                                              ip=ip_of(request)),
                _("Webhook endpoint #%(id)d is enabled.") % {"id": endpoint_id})


@require_POST
def webhook_disable(request, endpoint_id: int):
    return _act(request, endpoint_id, lambda: endpoint_disable(endpoint_id=endpoint_id, reason="disabled by staff",
                                                               actor=actor_of(request), ip=ip_of(request)),
                _("Webhook endpoint #%(id)d is disabled.") % {"id": endpoint_id})


@require_POST
def webhook_redeliver_failed(request, endpoint_id: int):
    return _act(request, endpoint_id, lambda: endpoint_redeliver_failed(endpoint_id=endpoint_id, actor=actor_of(request),
                                                                        ip=ip_of(request)),
                _("Failed events will be sent again now."))


@require_POST
def webhook_message_redeliver(request, endpoint_id: int, message_id: int):
    return _act(request, endpoint_id, lambda: webhook_redeliver(message_id=message_id, actor=actor_of(request),
                                                                ip=ip_of(request)),
                _("Event #%(id)d will be sent again now.") % {"id": message_id})


@require_POST
@never_cache
def webhook_rotate(request, endpoint_id: int):
    require(request, CAPABILITY)
    try:
        made = endpoint_secret_rotate(endpoint_id=endpoint_id, actor=actor_of(request), ip=ip_of(request))
    except REFUSED as exc:
        messages.error(request, str(exc))
        return _back(endpoint_id)
    return _secret_page(request, made, _("Webhook secret rotated"))


@require_POST
def webhook_delete(request, endpoint_id: int):
    require(request, CAPABILITY)
    try:
        endpoint_delete(endpoint_id=endpoint_id, actor=actor_of(request), ip=ip_of(request))
    except REFUSED as exc:
        messages.error(request, str(exc))
        return _back(endpoint_id)
    messages.success(request, _("Webhook endpoint #%(id)d deleted.") % {"id": endpoint_id})
    return _back()
