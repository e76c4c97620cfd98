"""kami/core/csrf.py: the cached pages' CSRF token, drawn with one read of the system's randomness
per string, is the token Django's get_token would give — Django's own middleware accepts it, and
a first visit's cookie is the secret it masks. Whole pages that post with it:
tests/test_storefront_lean.py."""
from __future__ import annotations

from collections import Counter

import pytest
from django.http import HttpResponse
from django.middleware.csrf import CSRF_ALLOWED_CHARS, CsrfViewMiddleware
from django.test import RequestFactory

from kami.core import csrf
from kami.core.csrf import csrf_token, random_string

pytestmark = pytest.mark.sqlite_only


def _page(cookie: str | None = None):
    """A GET through CsrfViewMiddleware whose view draws a token here: (token, the cookie set)."""
    request = RequestFactory().get("/", **({"HTTP_COOKIE": f"csrftoken={cookie}"} if cookie else {}))
    drawn = []
    middleware = CsrfViewMiddleware(lambda r: drawn.append(csrf_token(r)) or HttpResponse("page"))
    response = middleware(request)
    return drawn[0], response.cookies["csrftoken"].value if "csrftoken" in response.cookies else None


def _post(token: str, cookie: str) -> int:
    request = RequestFactory().post("/buy", {"csrfmiddlewaretoken": token}, HTTP_COOKIE=f"csrftoken={cookie}")
    request._dont_enforce_csrf_checks = False
    middleware = CsrfViewMiddleware(lambda r: HttpResponse("bought"))
    return (middleware.process_view(request, lambda r: None, (), {}) or HttpResponse("bought")).status_code


def test_a_first_visit_gets_a_new_secret_in_its_cookie_and_a_token_django_accepts_for_it():
    # when a first visit (no cookie) draws a token
    token, cookie = _page()
    # then the response sets a new secret, and Django's middleware takes the token with that cookie only
    assert cookie and len(cookie) == 32 and len(token) == 64 and set(token + cookie) <= set(CSRF_ALLOWED_CHARS)
    assert _post(token, cookie) == 200
    assert _post(token, _page()[1]) == 403


def test_a_returning_visit_keeps_its_secret_and_each_token_is_masked_anew():
    # given a buyer's secret from an earlier page
    secret = _page()[1]
    # when two pages draw tokens for it
    (first, kept), (second, kept_again) = _page(secret), _page(secret)
    # then the cookie keeps the secret (sent again, its expiry renewed), the tokens differ, and both are accepted
    assert kept == kept_again == secret
    assert first != second and secret not in (first, second)
    assert _post(first, secret) == _post(second, secret) == 200


def test_each_character_is_uniform_over_the_alphabet_and_the_bytes_that_would_bias_it_are_dropped(monkeypatch):
    # given the system's randomness replaced by every byte value in turn
    counting = iter(range(10**6))
    monkeypatch.setattr(csrf.os, "urandom", lambda n: bytes(next(counting) % 256 for _ in range(n)))
    # when 4 × 248 characters are drawn (4 rounds of each byte value from 0 to 247; 248-255 dropped)
    drawn = Counter(random_string(248 * 4))
    # then every character came exactly 16 times (with 248-255 kept, the first eight would have come more)
    assert set(drawn) == set(CSRF_ALLOWED_CHARS) and set(drawn.values()) == {16}


def test_the_real_randomness_spreads_over_every_character():
    # when 62,000 characters are drawn from the system
    drawn = Counter(random_string(62_000))
    # then each of the 62 came about 1,000 times (the standard deviation is 31: 250 is 8 of them)
    assert set(drawn) == set(CSRF_ALLOWED_CHARS) and all(750 < n < 1250 for n in drawn.values())
