"""A buyer's first look at the shop skips the session middleware (kami/api/lean.py): the home
and product pages without a session cookie go through page_middleware(), and must come out byte
for byte as the full stack draws them (but for each response's own CSRF token), with every
security header, a CSRF cookie whose token posts, and HEAD answered. A session cookie keeps the
full stack. Requests go through `kami.wsgi.application` as a WSGI server hands them over."""
from __future__ import annotations

import re
from http.cookies import SimpleCookie

import pytest
from django.contrib.sessions.middleware import SessionMiddleware
from django.core.cache import cache
from django.core.exceptions import MiddlewareNotUsed
from django.core.handlers.wsgi import WSGIHandler
from django.core.signals import request_finished, request_started
from django.db import close_old_connections

from kami.api.lean import LEAN_MIDDLEWARE, LeanHandler
from kami.catalog.models import Category, Product
from kami.core.logcontext import request_ids
from kami.core.middleware import CONTENT_SECURITY_POLICY
from tests.factories import add_keys
from tests.sandbox_play import enable_sandbox, wsgi_request

pytestmark = pytest.mark.django_db

TOKEN = re.compile(rb'name="csrfmiddlewaretoken" value="([^"]+)"')
PAGES = ["/", "/p/lean", "/p/no-such-product", "/?category=lean-cat", "/?q=Lean", "/p/lean?coupon=NOSUCH"]


@pytest.fixture(autouse=True)
def connection_kept():
    """The test's transaction outlives each request, as Django's test client arranges it."""
    for signal in (request_started, request_finished):
        signal.disconnect(close_old_connections)
    yield
    for signal in (request_started, request_finished):
        signal.connect(close_old_connections)


@pytest.fixture(autouse=True)
def shop(make_product):
    cache.clear()  # the shop settings' own cache: the database is rolled back between tests
    product = make_product("lean", name="Lean card")
    Product.objects.filter(pk=product.pk).update(category=Category.objects.create(slug="lean-cat", name="Lean category"))
    add_keys(product, ["LEAN-1", "LEAN-2"])
    enable_sandbox()
    yield
    cache.clear()


def without_token(headers: list, body: bytes) -> tuple[list, bytes]:
    """Headers and body with what each response has its own blanked: the CSRF token (the cookie's
    value and the forms'), the cookie's expiry date, the request id."""
    headers = [(name, "…" if name == "X-Request-ID" else re.sub(r"(csrftoken|expires)=[^;]+", r"\1=…", value))
               for name, value in headers]
    return headers, TOKEN.sub(b'name="csrfmiddlewaretoken" value="..."', body)


@pytest.mark.parametrize("path", PAGES)
@pytest.mark.parametrize("language", ["en", "zh-hans"])
def test_a_first_visit_gets_the_bytes_the_full_stack_draws(path, language):
    # given the page once through each stack (the second drawn from the cache the first filled)
    page, _, query = path.partition("?")
    full = request_ids(WSGIHandler())  # kami.wsgi.application without the lean dispatch
    for application in (None, full, None):
        lean = wsgi_request("GET", page, query=query, accept_language=language, application=application)
        whole = wsgi_request("GET", page, query=query, accept_language=language, application=full)
        # then status, headers and body are the same, but for the token each response has its own
        assert lean[0] == whole[0] in (200, 404)
        assert without_token(*lean[1:]) == without_token(*whole[1:])
        assert TOKEN.findall(lean[2]) != TOKEN.findall(whole[2]) or lean[0] == 404


def test_a_session_cookie_takes_the_full_stack_and_a_first_visit_does_not(monkeypatch):
    # given the session middleware watched
    seen = []
    original = SessionMiddleware.process_request
    monkeypatch.setattr(SessionMiddleware, "process_request", lambda self, request: seen.append(request.path) or original(self, request))
    # when a buyer without a session and one with a session cookie open the pages, and one posts
    for path in ("/", "/p/lean"):
        assert wsgi_request("GET", path)[0] == 200
        assert wsgi_request("HEAD", path)[0] == 200
    assert seen == []
    for path in ("/", "/p/lean"):
        assert wsgi_request("GET", path, cookie="csrftoken=x; sessionid=abcdefgh12345678")[0] == 200
    wsgi_request("POST", "/", b"")
    wsgi_request("GET", "/orders/recent")
    # then only the session and the other paths met the session middleware
    assert seen == ["/", "/p/lean", "/", "/orders/recent"]


@pytest.mark.parametrize("path", ["/", "/p/lean"])
def test_lean_pages_carry_every_security_header(path):
    status, headers, _ = wsgi_request("GET", path)
    sent = dict(headers)
    assert status == 200
    assert sent["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
    assert sent["Permissions-Policy"].startswith("camera=()")
    assert sent["X-Frame-Options"] == "DENY"
    assert sent["X-Content-Type-Options"] == "nosniff"
    assert sent["Referrer-Policy"] == "same-origin"
    assert "Accept-Language" in sent["Vary"] and "Cookie" in sent["Vary"]


def test_the_first_visit_sets_the_csrf_cookie_and_its_forms_post():
    # given a first visit: no cookie at all
    status, headers, body = wsgi_request("GET", "/p/lean", accept_language="en")
    cookies = SimpleCookie()
    for name, value in headers:
        if name == "Set-Cookie":
            cookies.load(value)
    # then it sets the CSRF cookie, and the page's forms carry a token for it
    assert status == 200 and "csrftoken" in cookies and "sessionid" not in cookies
    token = TOKEN.search(body).group(1).decode()
    cookie = f"csrftoken={cookies['csrftoken'].value}"
    # when the buy form is sent with them, and with the token of another visit
    form = f"csrfmiddlewaretoken={token}&quantity=1&email=lean%40example.com&gateway=sandbox".encode()
    bought = wsgi_request("POST", "/buy/lean", form, content_type="application/x-www-form-urlencoded", cookie=cookie)
    other = TOKEN.search(wsgi_request("GET", "/")[2]).group(1).decode()
    forged = wsgi_request("POST", "/buy/lean", form.replace(token.encode(), other.encode()),
                          content_type="application/x-www-form-urlencoded", cookie=cookie)
    # then the first goes on to the payment and the second is refused
    assert bought[0] == 302, bought[2][:500]
    assert forged[0] == 403


def csrf_cookie(headers: list) -> str:
    """The value of the CSRF cookie a response sets."""
    cookies = SimpleCookie()
    for name, value in headers:
        if name == "Set-Cookie":
            cookies.load(value)
    return cookies["csrftoken"].value


def test_a_returning_buyer_keeps_their_secret_and_each_page_masks_it_anew():
    # given a buyer back with the CSRF cookie of an earlier page, and no session
    secret = csrf_cookie(wsgi_request("GET", "/p/lean")[1])
    cookie = f"csrftoken={secret}"
    # when they open the home and the product page
    pages = [wsgi_request("GET", path, cookie=cookie, accept_language="en") for path in ("/", "/p/lean")]
    # then each page's forms carry one token of its own, masked afresh, and the cookie keeps the secret
    tokens = [TOKEN.search(body).group(1).decode() for _, _, body in pages]
    assert len(set(tokens)) == 2 and secret not in tokens and all(len(t) == 64 for t in tokens)
    assert [(status, csrf_cookie(headers)) for status, headers, _ in pages] == [(200, secret), (200, secret)]
    # and each token buys with that cookie; no token, no cookie or another buyer's cookie does not
    form = "quantity=1&email=back%40example.com&gateway=sandbox"

    def buy(body: str, cookie: str = cookie) -> int:
        return wsgi_request("POST", "/buy/lean", body.encode(), content_type="application/x-www-form-urlencoded",
                            cookie=cookie)[0]

    assert [buy(f"csrfmiddlewaretoken={t}&{form}") for t in tokens] == [302, 302]
    assert buy(form) == 403
    assert buy(f"csrfmiddlewaretoken={tokens[0]}&{form}", cookie="") == 403
    other = csrf_cookie(wsgi_request("GET", "/")[1])
    assert buy(f"csrfmiddlewaretoken={tokens[0]}&{form}", cookie=f"csrftoken={other}") == 403


def test_head_answers_as_get_does():
    for path in ("/", "/p/lean"):
        got, head = wsgi_request("GET", path), wsgi_request("HEAD", path)
        assert head[0] == got[0] == 200
        assert [name for name, _ in head[1]] == [name for name, _ in got[1]]


class OptingOut:
    """A middleware that opts out when the server starts, as Django allows (MiddlewareNotUsed)."""

    def __init__(self, get_response):
        raise MiddlewareNotUsed("not needed here")


def test_a_middleware_that_opts_out_is_left_out_of_a_lean_chain(db):
    # given: a lean chain naming a middleware that opts out
    handler = LeanHandler((*LEAN_MIDDLEWARE, "tests.test_storefront_lean.OptingOut"))
    # when
    status, _, body = wsgi_request("GET", "/healthz", application=handler)
    # then: the chain runs without it, as Django's own handler would
    assert (status, body) == (200, b"ok\n")
