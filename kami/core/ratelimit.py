"""Fixed-window rate limits on Django's cache: one counter per scope, identity and window.

The window number comes from `clock.now()`, so tests move time with `clock.travel`. With the
default per-process cache (LocMemCache) each server process counts on its own; set
KAMI_REDIS_URL to share the counters (settings.py).
"""
from __future__ import annotations

import hashlib

from django.core.cache import cache

from kami.core import clock


def _key(scope: str, identity: str, window: int) -> str:
    # Hashed: identities are emails and IPs, and cache keys must stay short and plain.
    digest = hashlib.sha256(identity.encode("utf-8")).hexdigest()[:32]
    return f"kami:rl:{scope}:{digest}:{int(clock.now().timestamp()) // window}"


def ratelimit_hit(*, scope: str, identity: str, limit: int, window: int) -> bool:
    """Count one attempt; True while this identity is within `limit` attempts in the current
    window of `window` seconds. A limit of 0 or less turns the check off."""
    if limit <= 0:
        return True
    key = _key(scope, identity, window)
    cache.add(key, 0, timeout=window + 1)
    try:
        count = cache.incr(key)
    except ValueError:  # the key expired between add and incr: this is the window's first attempt
        cache.add(key, 1, timeout=window + 1)
        count = 1
    return count <= limit


def ratelimit_spent(*, scope: str, identity: str, limit: int, window: int) -> bool:
    """True when this identity has already used up `limit` attempts in the current window:
    a look without counting, for callers that count only failures (`ratelimit_hit`)."""
    return limit > 0 and (cache.get(_key(scope, identity, window)) or 0) >= limit
