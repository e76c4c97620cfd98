"""Security headers every page carries (pages load nothing from elsewhere (no CDN), run no
inline script, and cannot be framed; forms may lead to a payment gateway (https)), and the
request body limit per path, and a full disk answered as such (503, not a 500 page)."""
from __future__ import annotations

import logging

from django.conf import settings
from django.http import HttpResponse, JsonResponse

from kami.core.errors import storage_full

log = logging.getLogger("kami.storage")

CONTENT_SECURITY_POLICY = "; ".join([
    "default-src 'self'",
    "script-src 'self'",
    "style-src 'self'",
    "img-src 'self' data:",
    "object-src 'none'",
    "base-uri 'none'",
    "frame-ancestors 'none'",
    "form-action 'self' https:",  # the buy form's redirect goes to the gateway's cashier
])


class SecurityHeadersMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        response.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
        response.setdefault("Permissions-Policy", "camera=(), microphone=(), geolocation=(), payment=()")
        return response


MERCHANT_API = "/api/v1/merchant/"


class BodyLimitMiddleware:
    """A declared request body larger than its path accepts gets a 413 before anything reads it.

    The back office takes key files (KAMI_IMPORT_MAX_BYTES) and pictures; every other path (buyer
    forms, the order API, gateway notifications, the Telegram webhook) at most
    DATA_UPLOAD_MAX_MEMORY_SIZE, which is also Django's own limit when a body is read. Without
    this, Django's limit answers a 400 only once a view touches the body. `kami serve` refuses
    bodies past KAMI_REQUEST_MAX_BYTES itself, before reading them (docs/security.md)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        declared = request.META.get("CONTENT_LENGTH") or "0"
        size = int(declared) if declared.isdigit() else 0  # not a number: Django reads no body at all
        limit = body_limit(request.path_info)
        if limit is not None and size > limit:
            return HttpResponse(too_large_text(size, limit), status=413, content_type="text/plain; charset=utf-8")
        return self.get_response(request)


def too_large_text(size: int, limit: int) -> str:
    return f"请求内容过大 / request body too large: {size:,} bytes sent, at most {limit:,} accepted at this address\n"


def body_limit(path: str) -> int | None:
    """The largest request body `path` accepts, in bytes; None where the edge answers it itself
    (the merchant API's 413 problem document, from Django's limit, also before reading the body)."""
    if path.startswith(MERCHANT_API):
        return None
    if path.startswith(f"/{settings.KAMI_ADMIN_PATH}/"):
        return settings.KAMI_REQUEST_MAX_BYTES
    return settings.DATA_UPLOAD_MAX_MEMORY_SIZE


class StorageFullMiddleware:
    """A view that ran out of disk space (the SQLite data dir, an upload, the database server's
    disk) answers 503 with Retry-After, in words a buyer can act on, and logs where and the fix
    for the merchant: not a 500 page. Nothing was saved (the transaction rolled back); the same
    request succeeds once space is freed, without a restart. Notifications never get here: the
    notify path answers the gateway's own "retry" (kami.fulfilment.notify)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)

    def process_exception(self, request, exception):
        full = storage_full(exception)
        if full is None:
            return None
        log.error("%s %s: %s", request.method, request.path, full)
        if request.path_info.startswith("/api/"):
            response = JsonResponse({"error": full.code, "message": "the shop cannot save anything right now; "
                                     "nothing was saved. Try again in a few minutes"}, status=503)
        else:
            response = HttpResponse(STORAGE_FULL_PAGE, status=503, content_type="text/plain; charset=utf-8")
        response["Retry-After"] = "60"
        return response


STORAGE_FULL_PAGE = ("本店暂时无法保存任何内容，此次操作未被保存。请几分钟后再试。\n"
                     "The shop cannot save anything right now: nothing was saved. Please try again in a few minutes.\n")
