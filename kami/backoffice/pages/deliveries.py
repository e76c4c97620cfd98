"""The delivery queue: outbox rows not yet delivered, by tab, with retry-now and mark-handled.

Reading needs resend_deliveries or handle_deliveries (support can see why an email did not
arrive); acting needs handle_deliveries. Both actions are POSTs that call one service each.
"""
from __future__ import annotations

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import HttpResponseNotAllowed, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import NoReverseMatch, reverse
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST

from kami.backoffice.perms import actor_of, can, ip_of, require
from kami.backoffice.site import site
from kami.core.errors import BadInput, Conflict, NotFound
from kami.delivery.selectors import deliveries_list
from kami.delivery.services import delivery_mark_handled, delivery_retry_now

TABS = ("pending", "retrying", "failed", "manual")
RETRYABLE = ("pending", "failed", "manual")  # what delivery_retry_now accepts
CLOSABLE = ("failed", "manual")  # what delivery_mark_handled accepts


def tab_label(tab: str) -> str:
    return {"pending": _("Pending"), "retrying": _("Retrying"), "failed": _("Failed"), "manual": _("Manual")}[tab]


def _may_read(user) -> bool:
    return can(user, "handle_deliveries") or can(user, "resend_deliveries")


def _order_url(row) -> str:
    order_id = (row.payload or {}).get("order_id")
    if not order_id:
        return ""
    try:
        return reverse("admin:orders_order_change", args=[order_id])
    except NoReverseMatch:  # the orders pages are not registered in this build
        return ""


def deliveries_page(request):
    if request.method != "GET":
        return HttpResponseNotAllowed(["GET"])
    if not _may_read(request.user):
        raise PermissionDenied("your role may not read the delivery queue")
    tab = request.GET.get("tab") or "manual"
    if tab not in TABS:
        tab = "manual"
    rows = list(deliveries_list(status=tab, limit=200))
    context = {
        **site.each_context(request),
        "title": _("Delivery queue"),
        "tab": tab,
        "tabs": [(t, tab_label(t), f"{reverse('admin:deliveries')}?tab={t}") for t in TABS],
        "rows": [{"row": r, "order_url": _order_url(r), "can_retry": r.status in RETRYABLE,
                  "can_close": r.status in CLOSABLE} for r in rows],
        "may_act": can(request.user, "handle_deliveries"),
        "limit_reached": len(rows) >= 200,
    }
    return TemplateResponse(request, "backoffice/deliveries/queue.html", context)


def _back(request) -> HttpResponseRedirect:
    tab = request.POST.get("tab")
    return HttpResponseRedirect(f"{reverse('admin:deliveries')}?tab={tab if tab in TABS else 'manual'}")


@require_POST
def delivery_retry(request, message_id: int):
    require(request, "handle_deliveries")
    try:
        delivery_retry_now(message_id=message_id, actor=actor_of(request), ip=ip_of(request))
    except (BadInput, NotFound, Conflict) as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, _("Delivery #%(id)d will be tried again now.") % {"id": message_id})
    return _back(request)


@require_POST
def delivery_handled(request, message_id: int):
    require(request, "handle_deliveries")
    try:
        delivery_mark_handled(message_id=message_id, note=request.POST.get("note", ""), actor=actor_of(request),
                              ip=ip_of(request))
    except (BadInput, NotFound, Conflict) as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, _("Delivery #%(id)d is marked handled.") % {"id": message_id})
    return _back(request)
