"""The order pages of the back office: the detail page (the order admin's change view, read-only),
the after-sales actions on it, and the "awaiting staff" queue.

Each action is a POST that checks its capability, calls one service and shows the service's
message, success or refusal. Keys appear by id and fingerprint prefix only: revealing a key is
the keys page's business, and it is audited there.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.db.models import Q
from django.http import HttpResponseNotAllowed, HttpResponseRedirect
from django.shortcuts import get_object_or_404, render
from django.urls import reverse
from django.utils.translation import gettext as _

from kami.backoffice.perms import actor_of, buyer_email_for, can, ip_of, require
from kami.backoffice.site import site
from kami.catalog.models import Product
from kami.core.errors import KamiError
from kami.delivery.models import DeliveryAttempt, OutboxMessage
from kami.fulfilment.flag import NOT_FLAGGABLE, order_flag, order_unflag
from kami.fulfilment.manual import BY_HAND, order_fulfil_manually
from kami.fulfilment.refund import REFUNDABLE, order_refund
from kami.fulfilment.replace import order_key_replace
from kami.fulfilment.resend import order_delivery_resend
from kami.orders.models import Order, OrderKey
from kami.orders.selectors import orders_awaiting_staff
from kami.payments.models import Notification, Payment

FP = 8  # fingerprint prefix shown for a key, as in the audit log and the order events
# Outbox rows of an order, by the dedupe keys their services give them (`<kind>:<order pk>:…`):
# a prefix match on the unique column, not a scan of every payload.
ORDER_OUTBOX_KINDS = ("order_keys", "order_refunded", "key_replaced", "order_link")
AWAITING_SHOWN = 500


def _context(request, title: str, **extra) -> dict:
    return {**site.each_context(request), "title": title, "opts": Order._meta, **extra}


def _detail_url(order: Order) -> str:
    return reverse("admin:orders_order_change", args=[order.pk])


# ---- the detail page ---------------------------------------------------------------------------

@dataclass
class Entry:
    at: datetime
    source: str  # event | payment | notification | delivery | attempt
    title: str
    lines: list[str] = field(default_factory=list)
    error: str = ""


def _pairs(detail: object) -> list[str]:
    if not isinstance(detail, dict):
        return [str(detail)] if detail else []
    return [f"{k}: {v}" for k, v in detail.items()]


def _outbox_of(order: Order):
    match = Q()
    for kind in ORDER_OUTBOX_KINDS:
        match |= Q(dedupe_key__startswith=f"{kind}:{order.pk}:")
    return OutboxMessage.objects.filter(match).order_by("created_at", "id")


def _notifications_of(order: Order, trade_nos: list[str]):
    match = Q(order_no=order.order_no)
    if trade_nos:
        match |= Q(trade_no__in=trade_nos)
    return Notification.objects.filter(match).order_by("received_at", "id")


def order_timeline(*, order: Order, user) -> list[Entry]:
    """Everything that happened to the order, oldest first: its events, payments, the gateway's
    notifications (outcome only, never the raw body or headers) and its deliveries with every
    attempt. Parts the user's role may not read are left out."""
    entries = [Entry(e.at, "event", e.kind, _pairs(e.detail)) for e in order.events.all()]
    payments = list(Payment.objects.filter(order=order).order_by("created_at", "id"))
    if user.has_perm("payments.view_payment"):
        entries += [Entry(p.created_at, "payment", _("payment %(gateway)s %(trade_no)s") % {
            "gateway": p.gateway, "trade_no": p.trade_no}, [f"{p.amount} {p.currency}"]) for p in payments]
    if user.has_perm("payments.view_notification"):
        for n in _notifications_of(order, [p.trade_no for p in payments]):
            lines = [f"trade_no: {n.trade_no}", f"verified: {n.verified}", f"from: {n.remote_addr}"]
            entries.append(Entry(n.received_at, "notification", _("notification from %(gateway)s: %(result)s") % {
                "gateway": n.gateway, "result": n.result}, lines, n.error))
    if user.has_perm("delivery.view_outboxmessage"):
        rows = list(_outbox_of(order))
        for m in rows:
            lines = [f"{m.channel} → {buyer_email_for(user, m.target)}", f"attempts: {m.attempts}"]
            lines += [f"note: {m.note}"] if m.note else []
            entries.append(Entry(m.created_at, "delivery", _("delivery #%(id)s %(kind)s: %(status)s") % {
                "id": m.pk, "kind": m.kind, "status": m.status}, lines, m.last_error))
        if user.has_perm("delivery.view_deliveryattempt"):
            for a in DeliveryAttempt.objects.filter(message__in=rows).order_by("at", "id"):
                title = _("delivery #%(id)s attempt: %(result)s") % {
                    "id": a.message_id, "result": _("sent") if a.ok else _("failed")}
                entries.append(Entry(a.at, "attempt", title, [a.worker] if a.worker else [], a.error))
    return sorted(entries, key=lambda e: e.at)


def _keys_of(order: Order) -> list[dict]:
    rows = OrderKey.objects.filter(order=order).select_related("key").order_by("position", "id")
    return [{"pk": r.key_id, "position": r.position + 1, "fingerprint": r.key.fingerprint[:FP],
             "status": r.key.status, "status_label": r.key.get_status_display(), "void_reason": r.key.void_reason}
            for r in rows]


def _actions(order: Order, user, keys: list[dict]) -> dict:
    """Which action forms the page shows: the role may, and the order's status allows it."""
    status = order.status
    return {
        "resend": can(user, "resend_deliveries") and status == Order.Status.FULFILLED,
        "fulfil": can(user, "fulfil_orders") and status in BY_HAND,
        "replace": (can(user, "replace_keys") and status == Order.Status.FULFILLED
                    and order.product.kind == Product.Kind.UNIQUE and any(k["status"] == "sold" for k in keys)),
        "refund": can(user, "refund_orders") and status in REFUNDABLE,
        "flag": can(user, "flag_orders") and status not in NOT_FLAGGABLE and status != Order.Status.FLAGGED,
        "unflag": can(user, "flag_orders") and status == Order.Status.FLAGGED,
    }


def order_detail(request, object_id: str, *, model_admin):
    """The order admin's change view: the order, its keys, its timeline, and the actions."""
    if not model_admin.has_view_permission(request):
        raise PermissionDenied("your role may not view orders")
    if not str(object_id).isdigit():
        return HttpResponseRedirect(reverse("admin:orders_order_changelist"))
    order = get_object_or_404(Order.objects.select_related("product", "coupon"), pk=int(object_id))
    keys = _keys_of(order) if request.user.has_perm("orders.view_orderkey") else None
    context = _context(request, _("Order %(no)s") % {"no": order.order_no}, order=order, keys=keys,
                       answers=order.custom_answers, timeline=order_timeline(order=order, user=request.user),
                       actions=_actions(order, request.user, keys or []))
    return render(request, "backoffice/orders/detail.html", context)


# ---- the actions -------------------------------------------------------------------------------

class _Refused(KamiError):
    """Input the page itself refuses before calling a service (shown like a service's refusal)."""


def _act(request, pk: int, capability: str, call):
    """Check the capability and the method, run `call(order)` (one service), and show its result:
    `call` returns the success message; a refusal's message is shown as the error."""
    require(request, capability)
    if request.method != "POST":
        return HttpResponseNotAllowed(["POST"])
    order = get_object_or_404(Order, pk=pk)
    try:
        messages.success(request, call(order))
    except KamiError as exc:
        messages.error(request, str(exc))
    return HttpResponseRedirect(_detail_url(order))


def order_resend(request, pk: int):
    def call(order):
        row = order_delivery_resend(order_id=order.pk, actor=actor_of(request), ip=ip_of(request))
        return _("The keys are queued to %(email)s again (delivery #%(id)s).") % {
            "email": buyer_email_for(request.user, row.target), "id": row.pk}
    return _act(request, pk, "resend_deliveries", call)


def order_fulfil(request, pk: int):
    # One line per unit; blank lines (a trailing newline) are not units.
    lines = [line for line in request.POST.get("contents", "").splitlines() if line.strip()]

    def call(order):
        done = order_fulfil_manually(order_no=order.order_no, contents=lines, actor=actor_of(request),
                                     ip=ip_of(request))
        return _("Order %(no)s fulfilled by hand with %(n)s line(s); the buyer is emailed.") % {
            "no": done.order_no, "n": len(lines)}
    return _act(request, pk, "fulfil_orders", call)


def order_replace(request, pk: int):
    def call(order):
        key_pk = request.POST.get("key", "")
        if not key_pk.isdigit():
            raise _Refused(_("Choose the key to replace."))
        new = order_key_replace(order_no=order.order_no, key_pk=int(key_pk), reason=request.POST.get("reason", ""),
                                actor=actor_of(request), ip=ip_of(request))
        return _("Key #%(old)s replaced by key #%(new)s (fingerprint %(fp)s); the buyer is emailed.") % {
            "old": key_pk, "new": new.pk, "fp": new.fingerprint[:FP]}
    return _act(request, pk, "replace_keys", call)


def order_refund_view(request, pk: int):
    """First POST (from the detail page): the confirmation page. Second POST, with `confirm`: the refund."""
    require(request, "refund_orders")
    if request.method == "POST" and not request.POST.get("confirm"):
        order = get_object_or_404(Order.objects.select_related("product"), pk=pk)
        voided = OrderKey.objects.filter(order=order, exclusive_key__isnull=False).count()  # as order_refund voids
        return render(request, "backoffice/orders/refund_confirm.html", _context(
            request, _("Refund order %(no)s?") % {"no": order.order_no}, order=order,
            reason=request.POST.get("reason", ""), sold=voided))

    def call(order):
        outcome = order_refund(order_no=order.order_no, reason=request.POST.get("reason", ""),
                               actor=actor_of(request), ip=ip_of(request))
        if outcome.manual:
            return _("Order %(no)s is refunded and %(n)s key(s) voided. This gateway has no refund API: pay the "
                     "buyer back by hand.") % {"no": outcome.order_no, "n": outcome.keys_voided}
        return _("Order %(no)s is refunded through the gateway (reference %(ref)s) and %(n)s key(s) voided.") % {
            "no": outcome.order_no, "ref": outcome.gateway_ref, "n": outcome.keys_voided}
    return _act(request, pk, "refund_orders", call)


def order_flag_view(request, pk: int):
    def call(order):
        order_flag(order_no=order.order_no, reason=request.POST.get("reason", ""), actor=actor_of(request),
                   ip=ip_of(request))
        return _("Order %(no)s is flagged for review.") % {"no": order.order_no}
    return _act(request, pk, "flag_orders", call)


def order_unflag_view(request, pk: int):
    def call(order):
        done = order_unflag(order_no=order.order_no, actor=actor_of(request), ip=ip_of(request))
        return _("Order %(no)s is unflagged: it is %(status)s again.") % {"no": done.order_no, "status": done.status}
    return _act(request, pk, "flag_orders", call)


# ---- the queue ---------------------------------------------------------------------------------

def awaiting_staff(request):
    """Paid orders a person must act on, oldest paid first."""
    if not request.user.has_perm("orders.view_order"):
        raise PermissionDenied("your role may not view orders")
    queue = orders_awaiting_staff()
    return render(request, "backoffice/orders/awaiting.html", _context(
        request, _("Orders awaiting staff"), orders=list(queue[:AWAITING_SHOWN]), total=queue.count(),
        shown=AWAITING_SHOWN))


ROUTES = [
    ("orders/awaiting-staff/", awaiting_staff, "orders_awaiting_staff"),
    ("orders/act/<int:pk>/resend/", order_resend, "orders_resend"),
    ("orders/act/<int:pk>/fulfil/", order_fulfil, "orders_fulfil"),
    ("orders/act/<int:pk>/replace/", order_replace, "orders_replace"),
    ("orders/act/<int:pk>/refund/", order_refund_view, "orders_refund"),
    ("orders/act/<int:pk>/flag/", order_flag_view, "orders_flag"),
    ("orders/act/<int:pk>/unflag/", order_unflag_view, "orders_unflag"),
]
