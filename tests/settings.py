"""Test settings: the real settings, pointed at a throwaway data dir and at the database named by
KAMI_TEST_DATABASE_URL (default: SQLite). Django creates and drops its own test database."""
import base64
import os
import tempfile

os.environ.setdefault("KAMI_DATA_DIR", tempfile.mkdtemp(prefix="kami-test-"))
os.environ.setdefault("KAMI_DATA_KEY", "ktest:" + base64.b64encode(b"\x01" * 32).decode())
os.environ.setdefault("KAMI_SECRET_KEY", "test-secret-key-not-for-production")
os.environ["DATABASE_URL"] = os.environ.get("KAMI_TEST_DATABASE_URL", "sqlite:///" + os.path.join(os.environ["KAMI_DATA_DIR"], "kami.sqlite3"))
os.environ.setdefault("KAMI_ADMIN_EMAIL", "owner@shop.test")
os.environ.setdefault("KAMI_BASE_URL", "http://testserver")

from kami.settings import *  # noqa: E402,F401,F403
from kami.settings import DATABASES  # noqa: E402

if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    DATABASES["default"]["ENGINE"] = "tests.backends.postgresql"  # DELETE, not TRUNCATE, between tests
if DATABASES["default"]["ENGINE"].endswith("sqlite3"):
    # A file, not :memory:, so threads and subprocesses see the same database.
    DATABASES["default"]["TEST"] = {"NAME": os.path.join(os.environ["KAMI_DATA_DIR"], "test-kami.sqlite3")}
EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
# The sandbox is how most tests pay (tests/sandbox_play.py); in this process only, like `kami demo`:
# servers the tests start get KAMI_SANDBOX=1 only when they ask for it.
KAMI_SANDBOX = True
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
# Rate-limit counters in this process's memory, whatever KAMI_REDIS_URL says.
CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "kami-test"},
          "storefront": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "kami-test-pages"}}
# Off for the suite (fuzz tests send hundreds of forgeries from one address); tests/payments/
# test_notify_storage.py turns it on.
KAMI_NOTIFY_REJECTED_LIMIT = 0
KAMI_COUPON_TRIES_LIMIT = 0  # likewise; tests/test_coupon_tries.py turns it on
