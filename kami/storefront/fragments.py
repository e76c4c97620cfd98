"""Rendered storefront pages kept in the `storefront` cache (settings.CACHES), so a page view
costs its few queries and a cache read instead of a template render (docs/performance.md).

The key is a digest of everything the page is drawn from: the template's context as the view
built it (every product row with its category, tiers, price, its stock state — available and
how many left — the enabled gateways, the shop settings as read for this request), the
language, the URL prefix and path, and the templates and translations themselves. The view
reads all of that fresh on each request (the stock in one query for all badges), so a sale, an
import, an edit or a settings change gives the next request a new key, in every server process,
with no message to send: nothing is ever invalidated, unused entries age out (TIMEOUT,
MAX_ENTRIES). What a cached page saves is the drawing: the queries that read its data remain.

Nothing buyer-specific is cached: a view caches only a pristine page (no typed values, no
error, no coupon, no captcha), and the CSRF token is drawn as a slot that each response fills
with its own. A cached template may read from the request only what the key holds (the path).
"""
from __future__ import annotations

import hashlib
import logging
from dataclasses import fields as dataclass_fields, is_dataclass
from datetime import date, datetime
from decimal import Decimal
from functools import cache
from importlib import metadata
from pathlib import Path

from django.core.cache import caches
from django.db.models import Model
from django.http import HttpRequest, HttpResponse
from django.middleware.csrf import get_token
from django.shortcuts import render
from django.template import Context, Template
from django.template.loader import render_to_string
from django.urls import get_script_prefix
from django.utils import translation
from django.utils.functional import Promise

from kami.shop.selectors import shop_settings_get

log = logging.getLogger(__name__)

CACHE_ALIAS = "storefront"
CSRF_SLOT = "kamiCsrfSlot"  # never a real token: those are 64 random characters
_PLAIN_TYPES = (str, int, float, bool, Decimal, date, datetime, bytes, type(None))


def page_cached(request: HttpRequest, template: str, context: dict) -> HttpResponse:
    """`template` drawn from `context`, from the cache when an identical page was drawn before.
    Call it only for a pristine page whose context holds nothing typed by the buyer."""
    context = {**context, "shop": shop_settings_get()}  # the settings the key saw, not a later read
    try:
        key = "page:" + page_key(request, template, context)
    except TypeError:  # a value plain() cannot key: draw the page as before rather than fail it
        log.warning("storefront page %s drawn uncached: its context cannot be keyed", template, exc_info=True)
        return render(request, template, context)
    store = caches[CACHE_ALIAS]
    body = store.get(key)
    if body is None:
        body = render_to_string(template, {**context, "csrf_token": CSRF_SLOT}, request)
        store.set(key, body)
    # get_token also tells CsrfViewMiddleware to set the cookie the token belongs to.
    return HttpResponse(body.replace(_slot_tag(), _slot_tag().replace(CSRF_SLOT, get_token(request))))


def page_key(request: HttpRequest, template: str, context: dict) -> str:
    drawn_from = (_code_version(), template, translation.get_language(), get_script_prefix(),
                  request.get_full_path(), plain(context))
    return hashlib.blake2b(repr(drawn_from).encode(), digest_size=20).hexdigest()


def plain(value: object) -> object:
    """`value` as nested tuples of plain values whose repr says everything a template can read
    from it: a model row's fields and extra attributes (a card's stock, its price) and the rows
    select_related brought with it; a dataclass's fields; a tuple subclass's attributes too (a
    Price's coupon). An unknown type is refused rather than keyed by an id that may change."""
    if isinstance(value, _PLAIN_TYPES):
        return value
    if isinstance(value, memoryview):  # a binary column on PostgreSQL
        return bytes(value)
    if isinstance(value, Promise):  # a lazy translation: the language is in the key
        return str(value)
    if isinstance(value, Model):
        attributes = {k: v for k, v in vars(value).items() if not k.startswith("_")}  # not _state
        return (type(value).__name__, plain(attributes), plain(value._state.fields_cache))
    if isinstance(value, dict):
        return tuple((str(k), plain(v)) for k, v in sorted(value.items(), key=lambda item: str(item[0])))
    if is_dataclass(value) and not isinstance(value, type):
        return (type(value).__name__, tuple(plain(getattr(value, f.name)) for f in dataclass_fields(value)))
    if isinstance(value, (list, tuple)):
        items = tuple(plain(v) for v in value)
        return (items, plain(vars(value))) if hasattr(value, "__dict__") else items
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
