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
from kami.storefront.captcha_check import captcha_new, captcha_passed


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


def _page(request: HttpRequest, status: int = 200, **context) -> HttpResponse:
    # One challenge serves both forms: only one of them is sent, and a challenge is tried once.
    return _private(render(request, "storefront/lookup.html", {**context, "captcha": captcha_new()}, status=status))


@require_http_methods(["GET", "POST"])
def order_lookup(request: HttpRequest) -> HttpResponse:
    if request.method == "GET":
        return _page(request)
    email = request.POST.get("email", "")
    if not _within_limits(request, email):
        page = _page(request, status=429, too_many=True)
        page["Retry-After"] = str(settings.KAMI_LOOKUP_WINDOW_SECONDS)
        return page
    order_no = request.POST.get("order_no", "")
    if not captcha_passed(request.POST):  # the password is not sent back; the rest is kept
        return _page(request, status=400, bad_captcha=True, kept={"email": email, "order_no": order_no})
    orders = orders_lookup(email=email, order_no=order_no, password=request.POST.get("password", ""))
    if order_no and orders:
        return _private(HttpResponseRedirect(order_link_signed(orders[0].order_no)))
    found = [{"order": o, "url": order_link_signed(o.order_no)} for o in orders]
    return _page(request, found=found, missed=not found)
