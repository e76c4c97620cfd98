"""The notify route and the buyer pages outside the middleware they do not need (issue 9).

A gateway's notification carries no session, no login, no CSRF token, no language: sessions,
auth, OTP, axes, CSRF, messages and locale only cost it time. `kami.wsgi.application` sends
`/pay/<gateway>/notify` to a Django handler whose middleware is `LEAN_MIDDLEWARE` (forwarded
headers are still checked first, so the sender IP the rate limit counts is the trusted one, and
the security headers still go out).

A buyer's first look at the shop (GET or HEAD of the home page or a product page, no session
cookie) goes to a handler whose middleware is settings.MIDDLEWARE without what only serves a
session: sessions, auth, OTP, messages, axes (`page_middleware()`). The pages read none of them —
their templates show no user and no message, and with no session cookie the full stack's
SessionMiddleware sets none and adds no header — so the bytes are the same (tests/
test_storefront_lean.py); locale, CSRF (the cookie and the token in the forms), the security
headers and the rest stay, in settings' order. A request with a session cookie (a merchant
looking at the shop, a buyer's session) takes the full stack.

Every other path goes through the full stack. The views are the same ones, resolved from the
same URLconf, so the test client, which uses the full stack, exercises the same code.
"""
from __future__ import annotations

import re

from django.conf import settings
from django.core.exceptions import MiddlewareNotUsed
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


# The buyer pages a request without a session cookie reads through page_middleware():
# kami/storefront/urls.py's home and product, anchored the same.
PAGE_PATH = re.compile(r"^/(?:p/[-a-zA-Z0-9_]+)?$")
SESSION_ONLY = frozenset({  # what page_middleware() leaves out of settings.MIDDLEWARE
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django_otp.middleware.OTPMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "axes.middleware.AxesMiddleware",
})


class LeanHandler(WSGIHandler):
    """Django's WSGI handler with `middleware` instead of settings.MIDDLEWARE, each one's hooks
    (process_view: CSRF; process_exception: StorageFull) registered as BaseHandler.load_middleware
    registers them."""

    def __init__(self, middleware: tuple[str, ...] = LEAN_MIDDLEWARE):
        self.middleware = middleware
        super().__init__()

    def load_middleware(self, is_async: bool = False) -> None:
        self._view_middleware, self._template_response_middleware, self._exception_middleware = [], [], []
        handler = convert_exception_to_response(self._get_response)
        for path in reversed(self.middleware):
            try:
                instance = import_string(path)(handler)
            except MiddlewareNotUsed:  # as Django's own handler: a middleware may opt out at start
                continue
            if hasattr(instance, "process_view"):
                self._view_middleware.insert(0, instance.process_view)
            if hasattr(instance, "process_template_response"):
                self._template_response_middleware.append(instance.process_template_response)
            if hasattr(instance, "process_exception"):
                self._exception_middleware.append(instance.process_exception)
            handler = convert_exception_to_response(instance)
        self._middleware_chain = handler


def page_middleware() -> tuple[str, ...]:
    """settings.MIDDLEWARE, in its order, without what only serves a session."""
    return tuple(path for path in settings.MIDDLEWARE if path not in SESSION_ONLY)


def lean_dispatch(full):
    """A WSGI application: notifications and sessionless buyer pages to their LeanHandler,
    everything else to `full`."""
    notify, pages = LeanHandler(), LeanHandler(page_middleware())
    session_cookie = settings.SESSION_COOKIE_NAME + "="

    def application(environ, start_response):
        path = environ.get("PATH_INFO", "")
        if NOTIFY_PATH.match(path):
            return notify(environ, start_response)
        if (environ.get("REQUEST_METHOD") in ("GET", "HEAD") and PAGE_PATH.match(path)
                and session_cookie not in environ.get("HTTP_COOKIE", "")):  # a look-alike name errs to the full stack
            return pages(environ, start_response)
        return full(environ, start_response)

    return application
