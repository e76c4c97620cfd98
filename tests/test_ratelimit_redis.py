"""With KAMI_REDIS_URL, rate-limit counters live in Redis and are shared by every process: two
independent cache clients (two server processes) count against one limit. Real Redis."""
from __future__ import annotations

import os
import secrets
import subprocess
import sys

import pytest
from django.core.cache.backends.redis import RedisCache

from kami.core import ratelimit

pytestmark = pytest.mark.sqlite_only  # Redis, not the database (one Redis db for every pass: run it once)

REDIS = "redis://127.0.0.1:6379/15"


@pytest.fixture
def two_processes(monkeypatch):
    """Two RedisCache clients with their own connections, as two server processes would have."""
    prefix = f"kami-test-{secrets.token_hex(4)}"
    first, second = (RedisCache(REDIS, {"KEY_PREFIX": prefix}) for _ in range(2))
    first.get("ping")  # fails here, clearly, when Redis is down (./dev test starts it)
    yield first, second
    first.clear()


def test_counters_are_shared_across_processes(two_processes, monkeypatch):
    first, second = two_processes
    allowed = []
    for client in (first, second, first, second):
        monkeypatch.setattr(ratelimit, "cache", client)
        allowed.append(ratelimit.ratelimit_hit(scope="lookup-ip", identity="203.0.113.9", limit=3, window=600))
    assert allowed == [True, True, True, False]


def test_kami_redis_url_puts_the_cache_in_redis(tmp_path):
    code = "import kami.settings as s; print(s.CACHES['default']['BACKEND'], s.CACHES['default']['LOCATION'])"
    env = {**os.environ, "KAMI_REDIS_URL": REDIS, "KAMI_DATA_DIR": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    assert out.split() == ["django.core.cache.backends.redis.RedisCache", REDIS]
