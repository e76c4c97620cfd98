"""`GET /metrics`: who may scrape, then the collector's text (kami.ops.metrics_collector).

Off by default (404, as if there were no such page). Turned on by either setting:

- `KAMI_METRICS_TOKEN`: a request carrying `Authorization: Bearer <token>` may scrape, from
  anywhere; the comparison takes the same time whatever the guess (hmac.compare_digest).
- `KAMI_METRICS_LOOPBACK=1`: a request from this machine may scrape without a token — a direct
  one only: a request relayed by a reverse proxy on this machine (it carries X-Forwarded-For)
  is the proxy's visitor, not a local client (kami.core.net.loopback_client).

A refused scrape gets 401 (with a token configured) or 403, and says nothing about the shop."""
from __future__ import annotations

import hmac

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.views.decorators.http import require_GET

from kami.core.net import loopback_client
from kami.ops.metrics_collector import metrics_render

# The classic text format, which every Prometheus reads (our names need none of 1.0.0's UTF-8).
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def metrics_allowed(request: HttpRequest) -> bool:
    token = settings.KAMI_METRICS_TOKEN
    if token:
        scheme, _, given = request.META.get("HTTP_AUTHORIZATION", "").partition(" ")
        if scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode()):
            return True
    return settings.KAMI_METRICS_LOOPBACK and loopback_client(request)


@require_GET
def metrics(request: HttpRequest) -> HttpResponse:
    if not (settings.KAMI_METRICS_TOKEN or settings.KAMI_METRICS_LOOPBACK):
        return HttpResponse("Not Found\n", status=404, content_type="text/plain")
    if not metrics_allowed(request):
        refused = HttpResponse("Forbidden: send Authorization: Bearer <KAMI_METRICS_TOKEN>\n", status=401,
                               content_type="text/plain") if settings.KAMI_METRICS_TOKEN else \
            HttpResponse("Forbidden: only this machine may read /metrics\n", status=403, content_type="text/plain")
        if settings.KAMI_METRICS_TOKEN:
            refused["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return refused
    response = HttpResponse(metrics_render(), content_type=CONTENT_TYPE)
    response["Cache-Control"] = "no-store"
    return response
