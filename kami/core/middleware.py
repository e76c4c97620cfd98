"""Security headers every page carries (pages load nothing from elsewhere (no CDN), run no
inline script, and cannot be framed; forms may lead to a payment gateway (https)), and the
request body limit per path."""
from __future__ import annotations

from django.conf import settings
from django.http import HttpResponse

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
            return HttpResponse(f"请求内容过大 / request body too large: {size:,} bytes sent, at most {limit:,} "
                                "accepted at this address\n", status=413, content_type="text/plain; charset=utf-8")
        return self.get_response(request)


def body_limit(path: str) -> int | None:
    """The largest request body `path` accepts, in bytes; None where the edge answers it itself
    (the merchant API's 413 problem document, from Django's limit, also before reading the body)."""
    if path.startswith(MERCHANT_API):
        return None
    if path.startswith(f"/{settings.KAMI_ADMIN_PATH}/"):
        return settings.KAMI_REQUEST_MAX_BYTES
    return settings.DATA_UPLOAD_MAX_MEMORY_SIZE
