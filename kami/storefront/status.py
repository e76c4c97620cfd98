"""An order's status as JSON, for the order and QR pages to poll. Same access rule as the
order page (token from checkout or signed email link); it reveals no key."""
from __future__ import annotations

from django.http import HttpRequest, JsonResponse

from kami.core.errors import NotFound
from kami.storefront.views import _buyer_order, _private


def order_status(request: HttpRequest, order_no: str) -> JsonResponse:
    try:
        order = _buyer_order(request, order_no)
    except NotFound:
        return _private(JsonResponse({"error": "not_found"}, status=404))
    return _private(JsonResponse({"status": order.status}))
