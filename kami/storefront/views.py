"""Buyer pages: a plain catalog, the order page, and the sandbox's own payment page.
The full storefront is a separate piece of work; these stay thin."""
from __future__ import annotations

import secrets

import segno
from urllib.parse import urlencode, urlparse

from django.conf import settings
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.utils import translation
from django.utils.safestring import mark_safe
from django.views.decorators.http import require_http_methods

from kami.core import clock
from kami.core.errors import BadInput, KamiError, NotFound, SoldOut
from kami.core.inbound import Inbound
from kami.core.logcontext import log_order
from kami.core.net import client_ip, loopback_client
from kami.delivery.links import link_days, order_link_expired, order_link_verify
from kami.fulfilment.checkout import Checkout, checkout_start
from kami.fulfilment.notify import notification_handle
from kami.orders.models import Order
from kami.orders.selectors import order_get_for_buyer, order_keys_plaintext
from kami.payments.gateways.sandbox import SIGNATURE_HEADER as SANDBOX_SIGNATURE_HEADER
from kami.payments.registry import gateway_get
from kami.storefront import product as product_pages
from kami.storefront.buy_form import custom_values_from, shown_on_product_page
from kami.storefront.captcha_check import captcha_passed
from kami.storefront.follow import order_follow
from kami.storefront.home import home_page
from kami.storefront.recent import recent_remember, recent_token


def _private(response: HttpResponse) -> HttpResponse:
    response["Cache-Control"] = "no-store"
    response["Referrer-Policy"] = "no-referrer"
    return response


def home(request: HttpRequest) -> HttpResponse:
    return home_page(request)


@require_http_methods(["POST"])
def buy(request: HttpRequest, slug: str) -> HttpResponse:
    if not captcha_passed(request.POST):  # before anything is created
        return product_pages.product_page(request, slug, form=request.POST, error="captcha", status=400)
    try:
        quantity = int(request.POST.get("quantity", "1"))
    except ValueError:
        quantity = 0
    error = None
    try:
        checkout = checkout_start(product_slug=slug, quantity=quantity, email=request.POST.get("email", ""),
                                  gateway=request.POST.get("gateway", ""), buyer_ip=client_ip(request) or None,
                                  locale=translation.get_language() or "zh-hans",
                                  lookup_password=request.POST.get("lookup_password", ""),
                                  coupon=request.POST.get("coupon", ""), custom_values=custom_values_from(request.POST))
    except BadInput as exc:
        if shown_on_product_page(exc.details.get("fields", {})):  # a coupon or custom field to fix
            return product_pages.product_page(request, slug, form=request.POST, errors=exc.details["fields"], status=400)
        error = "; ".join(f"{k}: {v}" for k, v in exc.details.get("fields", {}).items()) or str(exc)
    except SoldOut:
        error = "sold_out"
    except KamiError:  # the gateway is down or refused: the order stays pending and expires
        error = "gateway"
    if error:
        return home_page(request, error=error, status=400)
    return recent_remember(request, _pay(request, checkout), order_no=checkout.order.order_no, token=checkout.token)


def _pay(request: HttpRequest, checkout: Checkout) -> HttpResponse:
    if checkout.payment.type == "redirect":
        return HttpResponseRedirect(checkout.payment.url)
    if checkout.payment.type == "qr":
        # Scan-to-pay gateways (Alipay, WeChat Pay): the QR is drawn here, by the server, so the
        # page needs nothing from outside. The order page then waits for the notification.
        qr = segno.make(checkout.payment.qr, error="m").svg_inline(scale=6, border=2)
        return _private(render(request, "storefront/pay_qr.html", {
            "order": checkout.order, "qr_svg": mark_safe(qr), "order_url": checkout.order_url,  # noqa: S308 (segno's own SVG)
            "gateway": checkout.order.gateway}))
    return HttpResponseRedirect(checkout.order_url)


def _buyer_order(request: HttpRequest, order_no: str) -> Order:
    """The order behind a buyer's link: the token from checkout, the signed link from email, or
    (with neither in the URL, as when a gateway sends the buyer back) the token this browser's
    signed recent-orders cookie holds for it."""
    sig = request.GET.get("sig", "")
    if sig and order_link_verify(order_no, sig):
        order = Order.objects.select_related("product").filter(order_no=order_no).first()
        if order is not None:
            return order
    # PayPal appends its own `token=` to the return URL: a token that fails is not the last word.
    for token in filter(None, (request.GET.get("token", ""), recent_token(request, order_no=order_no))):
        try:
            order = order_get_for_buyer(order_no=order_no, token=token)
        except NotFound:
            continue
        log_order(order.order_no)
        return order
    raise NotFound("order not found")


def order_page(request: HttpRequest, order_no: str) -> HttpResponse:
    try:
        order = _buyer_order(request, order_no)
    except NotFound:
        if order_link_expired(order_no, request.GET.get("sig", "")):  # ours, but too old: say so
            return _private(render(request, "storefront/link_expired.html", {"link_days": link_days()}, status=410))
        return _private(render(request, "storefront/not_found.html", status=404))
    return _order_shown(request, order)


def order_return(request: HttpRequest, order_no: str) -> HttpResponse:
    """Where gateways send the buyer back. The URL carries no token (gateways and their logs see
    it): the order opens only in the browser whose recent-orders cookie, set at checkout before
    the redirect to the gateway, holds its token. Anyone else gets a neutral page: no order
    details, a pointer to the email link and the lookup."""
    try:
        order = _buyer_order(request, order_no)
    except NotFound:
        return _private(render(request, "storefront/order_return.html"))
    return _order_shown(request, order)


def _order_shown(request: HttpRequest, order: Order) -> HttpResponse:
    # The download link repeats what opened this page; with the cookie alone it needs nothing.
    access = urlencode({k: request.GET[k] for k in ("token", "sig") if request.GET.get(k)})
    keys = [k.reveal() for k in order_keys_plaintext(order=order)] if order.status == Order.Status.FULFILLED else []
    context = {"order": order, "keys": keys, "keys_text": "\n".join(keys),
               "follow": order_follow(order=order, now=clock.now()), "access": access}
    return _private(render(request, "storefront/order.html", context))


def order_keys_txt(request: HttpRequest, order_no: str) -> HttpResponse:
    """The order's keys as a text file, one per line: same access rule as the order page."""
    try:
        order = _buyer_order(request, order_no)
    except NotFound:
        return _private(HttpResponse("order not found\n", status=404, content_type="text/plain"))
    if order.status != Order.Status.FULFILLED:
        return _private(HttpResponse("no keys yet\n", status=404, content_type="text/plain"))
    body = "".join(f"{k.reveal()}\n" for k in order_keys_plaintext(order=order))
    response = HttpResponse(body, content_type="text/plain; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="keys-{order.order_no}.txt"'
    return _private(response)


@require_http_methods(["GET", "POST"])
def sandbox_checkout(request: HttpRequest, order_no: str) -> HttpResponse:
    """The sandbox's payment page. POST simulates the payment: a correctly signed notification
    goes through exactly the same path as a real gateway's."""
    try:
        gateway = gateway_get("sandbox")
    except NotFound:
        raise Http404("sandbox disabled") from None
    if not loopback_client(request):  # a free payment is for whoever sits at this machine, no one else
        raise Http404("the sandbox answers this machine only")
    params = request.POST if request.method == "POST" else request.GET
    amount, currency, back = params.get("amount", ""), params.get("currency", ""), params.get("return", "")
    if back and urlparse(back).netloc not in ("", request.get_host(), urlparse(settings.KAMI_BASE_URL).netloc):
        back = ""  # never an open redirect
    if request.method == "GET":
        # No `no-referrer` here: with it browsers send `Origin: null` on the form's POST, and the
        # CSRF check (rightly) refuses that. The page shows no key.
        page = render(request, "storefront/sandbox_checkout.html",
                      {"order_no": order_no, "amount": amount, "currency": currency, "return": back})
        page["Cache-Control"] = "no-store"
        return page
    body = gateway.notification_body(order_no=order_no, trade_no="SBX" + secrets.token_hex(8), amount=amount, currency=currency)
    notification_handle(gateway_name="sandbox", inbound=Inbound(
        method="POST", body=body, remote_addr=client_ip(request),
        headers={"Content-Type": "application/json", SANDBOX_SIGNATURE_HEADER: gateway.sign(body)}))
    return HttpResponseRedirect(back or "/")
