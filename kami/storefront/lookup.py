"""The order lookup page: order number + email, or email + lookup password. Thin: the rate
limits and one selector decide; every miss renders the same page with the same status."""
from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.views.decorators.http import require_http_methods

from kami.core.ratelimit import ratelimit_hit
from kami.delivery.links import order_link_signed
from kami.orders.selectors import orders_lookup


def _private(response: HttpResponse) -> HttpResponse:
    # no-store, but not `no-referrer`: with it browsers send `Origin: null` on this page's form
    # POST and the CSRF check refuses it. The default policy (same-origin) keeps links in the shop.
    response["Cache-Control"] = "no-store"
    return response


def _within_limits(request: HttpRequest, email: str) -> bool:
    window = settings.KAMI_LOOKUP_WINDOW_SECONDS
    # REMOTE_ADDR only: forwarded headers are spoofable unless a proxy we trust sets them.
    if not ratelimit_hit(scope="lookup-ip", identity=request.META.get("REMOTE_ADDR") or "-",
                         limit=settings.KAMI_LOOKUP_LIMIT_IP, window=window):
        return False
    return not email or ratelimit_hit(scope="lookup-email", identity=email.strip().casefold(),
                                      limit=settings.KAMI_LOOKUP_LIMIT_EMAIL, window=window)


@require_http_methods(["GET", "POST"])
def order_lookup(request: HttpRequest) -> HttpResponse:
    context = {"shop_name": settings.KAMI_SHOP_NAME}
    if request.method == "GET":
        return _private(render(request, "storefront/lookup.html", context))
    email = request.POST.get("email", "")
    if not _within_limits(request, email):
        page = render(request, "storefront/lookup.html", {**context, "too_many": True}, status=429)
        page["Retry-After"] = str(settings.KAMI_LOOKUP_WINDOW_SECONDS)
        return _private(page)
    order_no = request.POST.get("order_no", "")
    orders = orders_lookup(email=email, order_no=order_no, password=request.POST.get("password", ""))
    if order_no and orders:
        return _private(HttpResponseRedirect(order_link_signed(orders[0].order_no)))
    found = [{"order": o, "url": order_link_signed(o.order_no)} for o in orders]
    return _private(render(request, "storefront/lookup.html", {**context, "found": found, "missed": not found}))
