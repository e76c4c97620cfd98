"""The order lookup page: order number + email, or email + lookup password. Thin: the rate
limits, then one service (by number) or one selector (by password) decide.

By number, the page never shows the order: a fresh link goes to the order's own email
(kami.delivery.services.order_link_request) and the page says the same whether or not one
matched. The number and the email are not secrets (staff lists, a shared inbox, a receipt), so
they must not open the keys. By password, the matching orders are listed with their links: the
password is the buyer's own secret (never shown to staff, stored slow-hashed, at least 8
characters) and the way back when the email was mistyped or lost. A password of the wrong
length is refused before any hashing."""
from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_http_methods

from kami.core.net import client_ip
from kami.core.ratelimit import ratelimit_hit
from kami.delivery.links import link_days, order_link_signed
from kami.delivery.services import order_link_request
from kami.orders.models import email_normalise
from kami.orders.selectors import LOOKUP_PASSWORD_MAX, LOOKUP_PASSWORD_MIN, lookup_password_fits, orders_lookup
from kami.storefront.captcha_check import captcha_new, captcha_passed


def _private(response: HttpResponse) -> HttpResponse:
    # no-store, but not `no-referrer`: with it browsers send `Origin: null` on this page's form
    # POST and the CSRF check refuses it. The default policy (same-origin) keeps links in the shop.
    response["Cache-Control"] = "no-store"
    return response


def _within_limits(request: HttpRequest, email: str) -> bool:
    window = settings.KAMI_LOOKUP_WINDOW_SECONDS
    # client_ip: forwarded headers count only from a proxy in KAMI_TRUSTED_PROXIES.
    if not ratelimit_hit(scope="lookup-ip", identity=client_ip(request) or "-",
                         limit=settings.KAMI_LOOKUP_LIMIT_IP, window=window):
        return False
    return not email or ratelimit_hit(scope="lookup-email", identity=email_normalise(email),
                                      limit=settings.KAMI_LOOKUP_LIMIT_EMAIL, window=window)


def _page(request: HttpRequest, status: int = 200, **context) -> HttpResponse:
    # One challenge serves both forms: only one of them is sent, and a challenge is tried once.
    context = {**context, "captcha": captcha_new(), "password_min": LOOKUP_PASSWORD_MIN,
               "password_max": LOOKUP_PASSWORD_MAX}
    return _private(render(request, "storefront/lookup.html", context, status=status))


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
    if order_no:
        return _by_number(request, email=email, order_no=order_no)
    return _by_password(request, email=email, password=request.POST.get("password", ""))


def _by_number(request: HttpRequest, *, email: str, order_no: str) -> HttpResponse:
    """The same page, hit or miss: the link, if any, is in the order's mailbox."""
    order_link_request(email=email, order_no=order_no)
    return _page(request, link_sent=True, link_days=link_days())


def _by_password(request: HttpRequest, *, email: str, password: str) -> HttpResponse:
    if not lookup_password_fits(password):  # no order has such a password: refused before hashing
        return _page(request, status=400, password_unfit=True, kept={"email": email})
    found = [{"order": o, "url": order_link_signed(o.order_no)} for o in orders_lookup(email=email, password=password)]
    return _page(request, found=found, missed=not found)
