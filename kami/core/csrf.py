"""The CSRF token of a buyer's cached page (kami/storefront/fragments.py): what Django's
`get_token(request)` gives, with one read of the system's randomness per random string.

Django's get_token draws each of a string's 32 characters with `secrets.choice`, one getrandom(2)
call each, and a first visit draws two strings (the secret its cookie keeps, the mask of the
token): 64 calls a page. CPython lets go of its lock around each call, and in a server under
load every call handed the lock to the event loop's thread and back: a page cost the server
1,101 µs of CPU and 23.6 context switches with Django's token, 662 µs and 10.3 with this one
(16 clients, processes free to move; 611 → 453 µs on one core: docs/performance.md, "Pages
through one handoff"). Here a string comes from one `os.urandom`
read, each character uniform over the same 62 (a byte from 248 up is dropped: each character is
4 of the 248 values left).

What this relies on, and tests/test_csrf_token.py holds to Django's own middleware: the token's
form, as Django's "How it works" describes it (the secret masked by a random string of the same
length: the mask, then each secret character shifted by its mask character in the alphabet), and
how get_token hands the secret to CsrfViewMiddleware (request.META's "CSRF_COOKIE", and
"CSRF_COOKIE_NEEDS_UPDATE" to have the cookie sent)."""
from __future__ import annotations

import os

from django.http import HttpRequest
from django.middleware.csrf import CSRF_ALLOWED_CHARS, CSRF_SECRET_LENGTH

_SIZE = len(CSRF_ALLOWED_CHARS)  # 62
_UNBIASED = 256 - 256 % _SIZE  # 248: the bytes that map evenly onto 62 characters
_INDEX = {char: i for i, char in enumerate(CSRF_ALLOWED_CHARS)}


def csrf_token(request: HttpRequest) -> str:
    """A fresh masked token for `request`'s CSRF secret (a new secret, and its cookie, when the
    request brought none), as `django.middleware.csrf.get_token` makes it."""
    secret = request.META.get("CSRF_COOKIE")
    if secret is None:
        secret = request.META["CSRF_COOKIE"] = random_string()
    request.META["CSRF_COOKIE_NEEDS_UPDATE"] = True  # the cookie goes out (a new one, or its expiry renewed)
    mask = random_string()
    return mask + "".join(CSRF_ALLOWED_CHARS[(_INDEX[s] + _INDEX[m]) % _SIZE] for s, m in zip(secret, mask))


def random_string(length: int = CSRF_SECRET_LENGTH) -> str:
    """`length` characters of CSRF_ALLOWED_CHARS, each uniform and independent."""
    chars: list[str] = []
    while len(chars) < length:
        chars += [CSRF_ALLOWED_CHARS[b % _SIZE] for b in os.urandom(length + 8) if b < _UNBIASED]
    return "".join(chars[:length])
