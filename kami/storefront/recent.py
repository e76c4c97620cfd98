"""This browser's recent orders: each order a buyer creates in the storefront is remembered
(order number + token) in a signed, HttpOnly, SameSite=Lax cookie, at most 10, newest first.

The cookie is the only key: another browser has none, and an edited cookie fails its signature
and is ignored whole. Tokens are checked against each order's stored hash once more before a
link is shown, so even a validly signed cookie shows only orders whose token it really holds.
"""
from __future__ import annotations

import json

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.utils.http import urlencode

from kami.core.crypto import token_matches
from kami.orders.models import Order

COOKIE = "kami_recent"
SALT = "kami.storefront.recent-orders"
KEEP = 10
MAX_AGE = 90 * 24 * 3600


def recent_read(request: HttpRequest) -> list[tuple[str, str]]:
    raw = request.get_signed_cookie(COOKIE, default=None, salt=SALT, max_age=MAX_AGE)
    try:
        entries = json.loads(raw) if raw else []
    except ValueError:
        return []
    if not isinstance(entries, list):
        return []
    return [(e[0], e[1]) for e in entries[:KEEP]
            if isinstance(e, list) and len(e) == 2 and all(isinstance(x, str) and 0 < len(x) <= 128 for x in e)]


def recent_remember(request: HttpRequest, response: HttpResponse, *, order_no: str, token: str) -> HttpResponse:
    entries = [(order_no, token)] + [e for e in recent_read(request) if e[0] != order_no]
    response.set_signed_cookie(COOKIE, json.dumps(entries[:KEEP], separators=(",", ":")), salt=SALT,
                               max_age=MAX_AGE, httponly=True, samesite="Lax", secure=settings.SESSION_COOKIE_SECURE)
    return response


def recent_token(request: HttpRequest, *, order_no: str) -> str:
    """The token this browser's cookie holds for `order_no` ("" if none): what lets a gateway
    send the buyer back to a URL that carries no token. The caller checks it like any token."""
    return next((token for remembered_no, token in recent_read(request) if remembered_no == order_no), "")


def recent_orders(request: HttpRequest) -> HttpResponse:
    entries = recent_read(request)
    found = {o.order_no: o for o in Order.objects.select_related("product").filter(order_no__in=[n for n, _ in entries])}
    rows = []
    for order_no, token in entries:
        order = found.get(order_no)
        if order is not None and token_matches(token, order.token_hash):
            url = reverse("order-page", args=[order_no]) + "?" + urlencode({"token": token})
            rows.append({"order": order, "url": url})
    response = render(request, "storefront/recent.html", {"rows": rows})
    # The page holds links that open orders (keys included): never cached, never sent on.
    response["Cache-Control"] = "no-store"
    response["Referrer-Policy"] = "no-referrer"
    return response
