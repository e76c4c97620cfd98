"""The notify route outside the middleware it does not need (issue 9).

A gateway's notification carries no session, no login, no CSRF token, no language: sessions,
auth, OTP, axes, CSRF, messages and locale only cost it time. `kami.wsgi.application` sends
`/pay/<gateway>/notify` to a Django handler whose middleware is `LEAN_MIDDLEWARE` (forwarded
headers are still checked first, so the sender IP the rate limit counts is the trusted one, and
the security headers still go out); every other path goes through the full stack. The view is
the same one (`kami.api.views.pay_notify`, resolved from the same URLconf), so the test client,
which uses the full stack, exercises the same code.
"""
from __future__ import annotations

import re

from django.core.handlers.exception import convert_exception_to_response
from django.core.handlers.wsgi import WSGIHandler
from django.db import connections
from django.utils.module_loading import import_string

NOTIFY_PATH = re.compile(r"^/pay/[a-z0-9_-]+/notify/?$")  # kami/api/urls.py's pay-notify, anchored the same
LEAN_MIDDLEWARE = (
    "kami.api.lean.KeptConnectionsTrusted",
    "kami.core.net.ForwardedHeadersMiddleware",  # first, as in settings.MIDDLEWARE
    "kami.core.middleware.BodyLimitMiddleware",  # a notification past 2 MiB: 413 unread
    "django.middleware.security.SecurityMiddleware",
    "kami.core.middleware.SecurityHeadersMiddleware",
)


class KeptConnectionsTrusted:
    """No per-request health check (CONN_HEALTH_CHECKS' `SELECT 1`) of a kept database connection
    on the notify path. The check costs a round trip before each group commit's BEGIN — 2.8 ms of
    a 14 ms batch cycle, 12-20 % of the throughput (docs/performance.md) — and buys nothing here:
    a connection that died since the last request fails the notification's first statement, the
    notify path answers the gateway's own "retry" (kami.fulfilment.notify), Django closes the
    connection at the request's end, and the gateway's retry finds a new one. Pages keep the
    check: a buyer should not see an error for a restart that happened while nobody was looking."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        for conn in connections.all(initialized_only=True):
            conn.health_check_done = True
        return self.get_response(request)


class LeanHandler(WSGIHandler):
    """Django's WSGI handler with LEAN_MIDDLEWARE instead of settings.MIDDLEWARE."""

    def load_middleware(self, is_async: bool = False) -> None:
        self._view_middleware, self._template_response_middleware, self._exception_middleware = [], [], []
        handler = convert_exception_to_response(self._get_response)
        for path in reversed(LEAN_MIDDLEWARE):
            handler = convert_exception_to_response(import_string(path)(handler))
        self._middleware_chain = handler


def notify_dispatch(full):
    """A WSGI application: notifications to a LeanHandler, everything else to `full`."""
    lean = LeanHandler()

    def application(environ, start_response):
        if NOTIFY_PATH.match(environ.get("PATH_INFO", "")):
            return lean(environ, start_response)
        return full(environ, start_response)

    return application
