"""Rendered storefront pages kept in the `storefront` cache (settings.CACHES), so a page view
costs its few reads and a cache read instead of a template render (docs/performance.md).

The key is a digest of everything the page is drawn from: the state the view names, read fresh
on each request by prepared statements (storefront.reads: every product row on the page with
its category and stock count, its tiers, the enabled gateways; on SQLite, when the database says
nothing was written since the thread's last read, that read's rows), the shop settings, the settings
that change what a page offers (captcha, sandbox), the language, the URL prefix and path, and
the templates and translations themselves. So a sale, an import, an edit or a settings change
gives the next request a new key, in every server process, with no message to send: nothing is
ever invalidated, unused entries age out (TIMEOUT, MAX_ENTRIES). On a miss the view's own ORM
code draws the page, and it is kept only if the state read again afterwards is unchanged: a page
drawn while a sale landed is served once, not kept under the state before the sale.

Nothing buyer-specific is cached: a view caches only a pristine page (no typed values, no
error, no coupon, no captcha), and the CSRF token is drawn as a slot that each response fills
with its own. A cached template may read from the request only what the key holds (the path).

A thread asked for a page again with the very state object it last served that page for (same
template, language, path, settings and shop; storefront.reads hands out one immutable state
object on SQLite until the database changes) serves the same body without computing the key or
reading the cache: both would give what it served (docs/performance.md).
"""
from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Callable
from dataclasses import fields as dataclass_fields, is_dataclass
from datetime import date, datetime
from decimal import Decimal
from functools import cache
from importlib import metadata
from pathlib import Path

from django.core.cache import caches
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.template import Context, Template
from django.template.loader import render_to_string
from django.urls import get_script_prefix
from django.utils import translation

from kami.core.csrf import csrf_token
from kami.payments.registry import sandbox_live
from kami.shop.selectors import shop_settings_get
from kami.storefront.captcha_check import captcha_enabled

log = logging.getLogger(__name__)

CACHE_ALIAS = "storefront"
CSRF_SLOT = "kamiCsrfSlot"  # never a real token: those are 64 random characters
_PLAIN_TYPES = (str, int, float, bool, Decimal, date, datetime, bytes, type(None))
_PLAIN_EXACTLY = frozenset(_PLAIN_TYPES)
# Per thread, the last body served for each page, with the state object it was keyed on.
_served = threading.local()
SERVED_PER_THREAD = 32  # pages remembered per thread; past that, forgotten all at once


def page_cached(request: HttpRequest, template: str, *, state: tuple, state_again: Callable[[], tuple],
                context: Callable[[], dict]) -> HttpResponse:
    """`template` drawn from `context()`, from the cache when it was drawn before from the same
    `state` (what the page shows, as read for this request: storefront.reads); `state_again`
    reads it anew. Only for a pristine page: `context()` must hold nothing typed by the buyer
    and follow from `state` and the request's path."""
    shop = shop_settings_get()  # in the key and on the page: one read
    page = (_drawn_where(request, template), shop)
    served = _served.__dict__.setdefault("pages", {})
    last = served.get(page)
    if last is not None and last[0] is state:  # this thread served this page for this very state object
        return _with_token(request, last[1])
    try:
        key = page_key(request, template, (shop, state))
    except TypeError:  # a value plain() cannot key: draw the page as before rather than fail it
        log.warning("storefront page %s drawn uncached: its state cannot be keyed", template, exc_info=True)
        return render(request, template, {**context(), "shop": shop})
    store = caches[CACHE_ALIAS]
    body = store.get(key)
    if body is None:
        body = render_to_string(template, {**context(), "shop": shop, "csrf_token": CSRF_SLOT}, request)
        if page_key(request, template, (shop, state_again())) != key:  # changed while drawn: served once, not kept
            return _with_token(request, body)
        store.set(key, body)
    if _immutable(state):
        if len(served) >= SERVED_PER_THREAD:
            served.clear()
        served[page] = (state, body)
    return _with_token(request, body)


def page_key(request: HttpRequest, template: str, state: tuple) -> str:
    drawn_from = (_code_version(), *_drawn_where(request, template), plain(state))
    return "page:" + hashlib.blake2b(repr(drawn_from).encode(), digest_size=20).hexdigest()


def _drawn_where(request: HttpRequest, template: str) -> tuple:
    """What a page's key holds besides its state: the template, the language, the URL prefix and
    path, the settings that change what a page offers."""
    return (template, translation.get_language(), get_script_prefix(), request.get_full_path(), captcha_enabled(),
            sandbox_live())


def _with_token(request: HttpRequest, body: str) -> HttpResponse:
    # csrf_token, like get_token, also tells CsrfViewMiddleware to set the cookie the token belongs to.
    return HttpResponse(body.replace(_slot_tag(), _slot_tag().replace(CSRF_SLOT, csrf_token(request))))


def _immutable(state: tuple) -> bool:
    """True when `state` cannot change under the same identity: plain() took it, and it hashes,
    so it holds no list, dict or other mutable container (storefront.reads' rows on SQLite)."""
    try:
        hash(state)
    except TypeError:
        return False
    return True


def plain(value: object) -> object:
    """`value` as nested tuples of plain values whose repr says everything it holds: rows as a
    database driver returns them (a binary column as bytes, a JSON column as dicts and lists), a
    dataclass's fields. An unknown type is refused rather than keyed by an id that may change."""
    if isinstance(value, _PLAIN_TYPES):
        return value
    if isinstance(value, memoryview):  # a binary column on PostgreSQL
        return bytes(value)
    if isinstance(value, dict):
        return tuple((str(k), plain(v)) for k, v in sorted(value.items(), key=lambda item: str(item[0])))
    if is_dataclass(value) and not isinstance(value, type):
        return (type(value).__name__, tuple(plain(getattr(value, f.name)) for f in dataclass_fields(value)))
    if isinstance(value, (list, tuple)):
        if _PLAIN_EXACTLY.issuperset(map(type, value)):  # a row of plain columns: as it is, without a call per column
            return tuple(value)
        return tuple(plain(v) for v in value)
    raise TypeError(f"a cached page cannot be keyed on a {type(value).__name__}: teach fragments.plain its content")


@cache
def _slot_tag() -> str:
    """What `{% csrf_token %}` draws for the slot: the one string the response replaces."""
    return Template("{% csrf_token %}").render(Context({"csrf_token": CSRF_SLOT}))


@cache
def _code_version() -> str:
    """The release and the storefront's templates and translations, read once per process: with
    a shared cache (KAMI_REDIS_URL) a page drawn by older templates is never served by newer ones."""
    kami = Path(__file__).resolve().parent.parent
    try:
        release = metadata.version("kami-shop")
    except metadata.PackageNotFoundError:  # run from a source tree
        release = "source"
    digest = hashlib.blake2b(release.encode(), digest_size=20)
    for path in sorted([*kami.glob("storefront/templates/**/*.html"), *kami.glob("*/locale/*/LC_MESSAGES/*.mo")]):
        digest.update(path.name.encode() + path.read_bytes())
    return digest.hexdigest()
