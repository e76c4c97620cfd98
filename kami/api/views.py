"""JSON API for checkout, and the gateway notify endpoints. Edges: parse, call one service, render."""
from __future__ import annotations

import json
import logging

from django.db import connection
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.utils import translation
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST

from kami.core.edge import inbound_from, response_from
from kami.core.errors import BadInput, KamiError, NotFound, Retryable, SoldOut
from kami.core.net import client_ip
from kami.fulfilment.checkout import checkout_start
from kami.fulfilment.notify import notification_handle
from kami.orders.selectors import order_get_for_buyer, order_keys_plaintext

log = logging.getLogger("kami.api")
MAX_BODY = 16 * 1024


def _no_store(response: HttpResponse) -> HttpResponse:
    response["Cache-Control"] = "no-store"
    response["Referrer-Policy"] = "no-referrer"
    return response


def _client_ip(request: HttpRequest) -> str | None:
    # client_ip: forwarded headers count only from a proxy in KAMI_TRUSTED_PROXIES.
    return client_ip(request) or None


def _has_nul(value: object) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_nul(v) for v in value)
    return False


@csrf_exempt
@require_POST
def orders_create(request: HttpRequest) -> JsonResponse:
    if len(request.body) > MAX_BODY:
        return JsonResponse({"error": "invalid", "message": "request body too large"}, status=413)
    try:
        data = json.loads(request.body or b"{}")
        if not isinstance(data, dict):
            raise ValueError
    except ValueError:
        return JsonResponse({"error": "invalid", "message": "the body must be a JSON object", "fields": {}}, status=400)
    if _has_nul(data):  # PostgreSQL refuses NUL in text: say so here, not with a 500 from the database
        return JsonResponse({"error": "invalid", "message": "text must not contain NUL characters", "fields": {}},
                            status=400)
    try:
        checkout = checkout_start(
            product_slug=data.get("product"), quantity=data.get("quantity", 1), email=data.get("email"),
            gateway=data.get("gateway"), buyer_ip=_client_ip(request), locale=translation.get_language() or "zh-hans",
            lookup_password=data.get("lookup_password") or "", coupon=data.get("coupon") or "",
            custom_values=data.get("custom_values"),
        )
    except BadInput as exc:
        return JsonResponse({"error": "invalid", "message": str(exc), "fields": exc.details.get("fields", {})}, status=400)
    except SoldOut as exc:
        return JsonResponse({"error": "sold_out", "message": str(exc)}, status=409)
    except Retryable:
        return JsonResponse({"error": "gateway_unavailable",
                             "message": "the payment service did not answer; try again in a moment"}, status=503)
    except KamiError as exc:
        log.warning("checkout refused by the gateway: %s", exc)
        return JsonResponse({"error": "gateway_refused", "message": "the payment service refused this payment"}, status=502)
    order = checkout.order
    return _no_store(JsonResponse({
        "order_no": order.order_no, "token": checkout.token, "status": order.status,
        "amount": str(order.amount), "currency": order.currency, "expires_at": order.expires_at.isoformat(),
        "discount": str(order.discount), "coupon": order.coupon.code if order.coupon else None,
        "payment": checkout.payment.as_json(), "order_url": checkout.order_url,
    }, status=201))


@require_GET
def orders_detail(request: HttpRequest, order_no: str) -> JsonResponse:
    token = request.headers.get("X-Order-Token") or request.GET.get("token", "")
    if "\x00" in order_no or "\x00" in token:
        return _no_store(JsonResponse({"error": "not_found"}, status=404))
    try:
        order = order_get_for_buyer(order_no=order_no, token=token)
    except NotFound:
        return _no_store(JsonResponse({"error": "not_found"}, status=404))
    body = {
        "order_no": order.order_no, "status": order.status, "product": order.product.slug,
        "quantity": order.quantity, "amount": str(order.amount), "currency": order.currency,
        "discount": str(order.discount), "custom_values": order.custom_values,
        "paid_at": order.paid_at.isoformat() if order.paid_at else None,
    }
    if order.status == order.Status.FULFILLED:
        body["keys"] = [k.reveal() for k in order_keys_plaintext(order=order)]
    return _no_store(JsonResponse(body))


@csrf_exempt
def pay_notify(request: HttpRequest, gateway: str) -> HttpResponse:
    try:
        reply = notification_handle(gateway_name=gateway, inbound=inbound_from(request))
    except NotFound:
        raise Http404("no such gateway") from None
    return response_from(reply)


def healthz(request: HttpRequest) -> HttpResponse:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except Exception:  # any database failure means unhealthy
        return HttpResponse("database unavailable\n", status=503, content_type="text/plain")
    return HttpResponse("ok\n", content_type="text/plain")
