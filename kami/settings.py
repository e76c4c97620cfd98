"""Settings from the environment (12-factor), with safe defaults.

DATABASE_URL   sqlite:///… (default: <data dir>/kami.sqlite3), postgres://…, mysql://…
EMAIL_URL      smtp://user:pass@host:587/?tls=True · default: mail written to <data dir>/mail
KAMI_DATA_DIR  default ./var · KAMI_BASE_URL · KAMI_ADMIN_EMAIL · KAMI_SECRET_KEY · KAMI_DATA_KEY
KAMI_ENV       development (default) | production — production refuses the sandbox gateway
KAMI_SANDBOX   1: the sandbox gateway is live in this process (kami demo sets it), loopback clients only
KAMI_TRUSTED_PROXIES  addresses/CIDRs of reverse proxies whose X-Forwarded-For/-Proto are believed
KAMI_REDIS_URL redis://… shares rate-limit counters between processes (default: per process)
"""
from __future__ import annotations

import logging
import os
from datetime import datetime, timedelta, timezone
from pathlib import Path

import dj_database_url
import dj_email_url
from django.core.exceptions import ImproperlyConfigured

from kami.core import datadir
from kami.core.net import trusted_networks_parse

BASE_DIR = Path(__file__).resolve().parent
DATA_DIR = datadir.data_dir()

KAMI_ENV = os.environ.get("KAMI_ENV", "development")
PRODUCTION = KAMI_ENV == "production"
DEBUG = os.environ.get("KAMI_DEBUG", "") == "1" and not PRODUCTION
# The sandbox gateway pays any order for free: live only in a process that asks for it
# (`kami demo` does), never in production, and only for clients on this machine (kami.core.net).
KAMI_SANDBOX = os.environ.get("KAMI_SANDBOX", "") == "1"
if KAMI_SANDBOX and PRODUCTION:
    raise ImproperlyConfigured("KAMI_SANDBOX=1 with KAMI_ENV=production: the sandbox pays any order for free; "
                               "unset KAMI_SANDBOX")
SECRET_KEY = datadir.secret_key()
KAMI_BASE_URL = os.environ.get("KAMI_BASE_URL", "http://127.0.0.1:8000").rstrip("/")
KAMI_ADMIN_EMAIL = os.environ.get("KAMI_ADMIN_EMAIL", "")
KAMI_SHOP_NAME = os.environ.get("KAMI_SHOP_NAME", "Kami")
# Admin alerts (docs/delivery.md): the language they are written in, and the optional channels
# besides KAMI_ADMIN_EMAIL. Tokens and secrets are read when sending, never stored in the outbox.
KAMI_ADMIN_LANGUAGE = os.environ.get("KAMI_ADMIN_LANGUAGE", "zh-hans")
KAMI_TELEGRAM_BOT_TOKEN = os.environ.get("KAMI_TELEGRAM_BOT_TOKEN", "")
KAMI_TELEGRAM_CHAT_ID = os.environ.get("KAMI_TELEGRAM_CHAT_ID", "")
KAMI_TELEGRAM_API_BASE = os.environ.get("KAMI_TELEGRAM_API_BASE", "https://api.telegram.org").rstrip("/")
# The Telegram bot storefront (docs/telegram.md): off unless `kami telegram set token=…` stored a token
# or this one is set; admin chat ids get the merchant's commands. The webhook secret derives from the token.
KAMI_TELEGRAM_SHOP_TOKEN = os.environ.get("KAMI_TELEGRAM_SHOP_TOKEN", "")
KAMI_TELEGRAM_SHOP_WEBHOOK = os.environ.get("KAMI_TELEGRAM_SHOP_WEBHOOK", "") == "1"
KAMI_TELEGRAM_ADMINS = os.environ.get("KAMI_TELEGRAM_ADMINS", "")
KAMI_ALERT_WEBHOOK_URL = os.environ.get("KAMI_ALERT_WEBHOOK_URL", "")
KAMI_ALERT_WEBHOOK_SECRET = os.environ.get("KAMI_ALERT_WEBHOOK_SECRET", "")
if KAMI_ADMIN_LANGUAGE not in ("zh-hans", "en"):
    raise ImproperlyConfigured(f"KAMI_ADMIN_LANGUAGE={KAMI_ADMIN_LANGUAGE!r}: use zh-hans or en")
if bool(KAMI_TELEGRAM_BOT_TOKEN) != bool(KAMI_TELEGRAM_CHAT_ID):
    raise ImproperlyConfigured("Telegram alerts need KAMI_TELEGRAM_BOT_TOKEN and KAMI_TELEGRAM_CHAT_ID: set both, or neither")
if bool(KAMI_ALERT_WEBHOOK_URL) != bool(KAMI_ALERT_WEBHOOK_SECRET):
    raise ImproperlyConfigured("webhook alerts need KAMI_ALERT_WEBHOOK_URL and KAMI_ALERT_WEBHOOK_SECRET: set both, or neither")
KAMI_ORDER_TTL_MINUTES = int(os.environ.get("KAMI_ORDER_TTL_MINUTES", "30"))
KAMI_WORKER_POLL_SECONDS = float(os.environ.get("KAMI_WORKER_POLL_SECONDS", "1"))
# Emails (and other deliveries) a worker sends at once, each over its own connection: a remote
# relay answers each message in 50–500 ms, and one at a time that is 2–20 emails a second for a
# whole drop (kami/delivery/worker.py, "Senders"). Mail providers cap concurrent connections, so
# the default stays modest.
KAMI_WORKER_SENDERS = os.environ.get("KAMI_WORKER_SENDERS", "4")
if not KAMI_WORKER_SENDERS.isdigit() or not 1 <= int(KAMI_WORKER_SENDERS) <= 64:
    raise ImproperlyConfigured(f"KAMI_WORKER_SENDERS={KAMI_WORKER_SENDERS!r}: give a whole number from 1 to 64 "
                               "(how many deliveries one worker sends at once; 4 by default)")
KAMI_WORKER_SENDERS = int(KAMI_WORKER_SENDERS)
# Worker heartbeats (kami/delivery/heartbeats.py): each `kami worker` writes one every HEARTBEAT
# seconds; `kami doctor` fails and /metrics counts no worker running when none was seen within LATE.
KAMI_WORKER_HEARTBEAT_SECONDS = float(os.environ.get("KAMI_WORKER_HEARTBEAT_SECONDS", "15"))
KAMI_WORKER_LATE_SECONDS = float(os.environ.get("KAMI_WORKER_LATE_SECONDS", "120"))
KAMI_WORKER_HEARTBEAT_KEEP_DAYS = int(os.environ.get("KAMI_WORKER_HEARTBEAT_KEEP_DAYS", "7"))  # then a silent row goes
# Delivery retry schedule, in seconds, as data: 11 retries after the first attempt. Each wait is
# drawn between 50% and 100% of its step, so the last retry comes 16–32 h (≈ 24 h on average)
# after the first attempt; then the delivery goes `manual` and a human is alerted.
KAMI_DELIVERY_BACKOFF = [
    int(x) for x in os.environ.get("KAMI_DELIVERY_BACKOFF", "30,60,300,900,1800,3600,7200,14400,28800,28800,28800").split(",")
]
# A channel's own schedule replaces that one. The merchant's webhooks (kami.webhooks) retry over
# days: 13 retries whose steps add up to 6.9 days, so the last comes 3.4–6.9 days after the first
# try (never under 3 days); then the endpoint is disabled and the merchant alerted.
KAMI_DELIVERY_BACKOFF_BY_CHANNEL = {"merchant_webhook": [int(x) for x in os.environ.get(
    "KAMI_WEBHOOK_BACKOFF", "10,60,300,1800,7200,21600,43200,86400,86400,86400,86400,86400,86400").split(",")]}
# A dynamic product's mint (kami/fulfilment/mint): a buyer is waiting, so 6 retries, the last 21–42
# minutes after the first try; then the order waits for a person (alert). Each call waits this long for an answer.
KAMI_DELIVERY_BACKOFF_BY_CHANNEL["mint"] = [int(x) for x in os.environ.get(
    "KAMI_MINT_BACKOFF", "10,30,60,300,900,1200").split(",")]
KAMI_MINT_TIMEOUT_SECONDS = float(os.environ.get("KAMI_MINT_TIMEOUT_SECONDS", "10"))
KAMI_SWEEP_SECONDS = int(os.environ.get("KAMI_SWEEP_SECONDS", "60"))
# Sent deliveries are deleted after this many days (0: kept forever), by the worker hourly and by
# `kami deliveries prune`, in batches of KAMI_OUTBOX_PRUNE_BATCH rows (kami/delivery/housekeeping.py).
KAMI_OUTBOX_KEEP_DAYS = int(os.environ.get("KAMI_OUTBOX_KEEP_DAYS", "30"))
KAMI_OUTBOX_PRUNE_BATCH = int(os.environ.get("KAMI_OUTBOX_PRUNE_BATCH", "500"))
KAMI_RECONCILE_AFTER_MINUTES = int(os.environ.get("KAMI_RECONCILE_AFTER_MINUTES", "5"))
KAMI_AUTO_REFUND_AFTER_HOURS = int(os.environ.get("KAMI_AUTO_REFUND_AFTER_HOURS", "0"))  # 0: off
KAMI_PAYMENT_GRACE_SECONDS = int(os.environ.get("KAMI_PAYMENT_GRACE_SECONDS", "300"))
# PostgreSQL: confirm the common paid notification with one set-based statement
# (kami/fulfilment/confirm_sql.py); "0": the ORM path for every case (the reference).
KAMI_CONFIRM_SQL = os.environ.get("KAMI_CONFIRM_SQL", "1") != "0"
# PostgreSQL: paid notifications that arrive together in one process are confirmed in one
# transaction (group commit, kami/fulfilment/batch.py); "0": one transaction each.
KAMI_CONFIRM_BATCH = os.environ.get("KAMI_CONFIRM_BATCH", "1") != "0"
# Notifications that fail verification: at most this many stored per sender IP and gateway in
# 10 minutes (past it, refused unless they verify, and not stored), kept this many days.
KAMI_NOTIFY_REJECTED_LIMIT = int(os.environ.get("KAMI_NOTIFY_REJECTED_LIMIT", "30"))
KAMI_NOTIFY_REJECTED_KEEP_DAYS = int(os.environ.get("KAMI_NOTIFY_REJECTED_KEEP_DAYS", "30"))
# Each process keeps a gateway's settings this many seconds after reading them (a change made
# elsewhere is seen within it; one made in the same process at once); 0: read on every request.
KAMI_GATEWAY_CACHE_SECONDS = float(os.environ.get("KAMI_GATEWAY_CACHE_SECONDS", "5"))
# Each process remembers "no webhook endpoint is enabled" this many seconds, so confirms skip the
# table (kami/webhooks/events.py); an endpoint enabled in another process is used within it.
KAMI_WEBHOOK_CACHE_SECONDS = float(os.environ.get("KAMI_WEBHOOK_CACHE_SECONDS", "5"))
# Merchant webhook endpoints may be on loopback or a private network (10/8, 172.16/12, 192.168/16,
# 100.64/10, fc00::/7) only when this is "1": by default Kami posts only to public addresses, so a
# URL cannot make the server fetch its own network (kami/webhooks/egress.py, docs/api.md).
KAMI_WEBHOOK_ALLOW_PRIVATE = os.environ.get("KAMI_WEBHOOK_ALLOW_PRIVATE", "") == "1"
# Coupon codes refused per client IP in 10 minutes before no code is checked (a refusal tells
# whether a code exists); 0: no limit.
KAMI_COUPON_TRIES_LIMIT = int(os.environ.get("KAMI_COUPON_TRIES_LIMIT", "20"))
# A worker holds the deliveries it claimed for KAMI_DELIVERY_LEASE_SECONDS and renews that lease
# every KAMI_DELIVERY_RENEW_SECONDS (default and at most a third of it) while it lives: a worker
# killed mid-batch delays its deliveries by about the lease, not minutes (kami/delivery/leases.py).
KAMI_DELIVERY_LEASE_SECONDS = float(os.environ.get("KAMI_DELIVERY_LEASE_SECONDS", "10"))
KAMI_DELIVERY_RENEW_SECONDS = float(os.environ.get("KAMI_DELIVERY_RENEW_SECONDS", "0"))  # 0: a third of the lease
if KAMI_DELIVERY_LEASE_SECONDS < 3:
    raise ImproperlyConfigured(f"KAMI_DELIVERY_LEASE_SECONDS={KAMI_DELIVERY_LEASE_SECONDS:g}: use 3 or more "
                               "(a lease shorter than a database hiccup makes workers send twice)")
# Tests only (tests/faults): hold the worker at a point so the test can kill it there.
KAMI_DELIVERY_TEST_PAUSE = os.environ.get("KAMI_DELIVERY_TEST_PAUSE", "")
if KAMI_DELIVERY_TEST_PAUSE and PRODUCTION:
    raise ImproperlyConfigured("KAMI_DELIVERY_TEST_PAUSE is for tests: unset it (with KAMI_ENV=production it would "
                               "stall deliveries)")
# Uploaded key files (kami.stock.jobs): the largest accepted, and how long a worker's hold on a
# running import lasts without progress before another worker resumes it.
KAMI_IMPORT_MAX_BYTES = int(os.environ.get("KAMI_IMPORT_MAX_BYTES", str(200 * 1024 * 1024)))
KAMI_IMPORT_LEASE_SECONDS = int(os.environ.get("KAMI_IMPORT_LEASE_SECONDS", "120"))
# Order lookup (/lookup): attempts per window, per client IP and per email (kami.core.ratelimit).
KAMI_LOOKUP_LIMIT_IP = int(os.environ.get("KAMI_LOOKUP_LIMIT_IP", "10"))
KAMI_LOOKUP_LIMIT_EMAIL = int(os.environ.get("KAMI_LOOKUP_LIMIT_EMAIL", "5"))
KAMI_LOOKUP_WINDOW_SECONDS = int(os.environ.get("KAMI_LOOKUP_WINDOW_SECONDS", "600"))
# Merchant API (docs/api.md): requests per minute each token may make (0: no limit).
KAMI_API_RATE_LIMIT = int(os.environ.get("KAMI_API_RATE_LIMIT", "120"))
# How long the signed order link in emails opens the order page (kami.delivery.links).
KAMI_ORDER_LINK_DAYS = int(os.environ.get("KAMI_ORDER_LINK_DAYS", "7"))
# Anti-abuse at checkout: unpaid, unexpired orders allowed per email and per buyer IP (0: off).
KAMI_PENDING_LIMIT_EMAIL = int(os.environ.get("KAMI_PENDING_LIMIT_EMAIL", "5"))
KAMI_PENDING_LIMIT_IP = int(os.environ.get("KAMI_PENDING_LIMIT_IP", "10"))
# A self-hosted captcha (django-simple-captcha) on the buy form and the lookup page; off unless 1.
KAMI_CAPTCHA = os.environ.get("KAMI_CAPTCHA", "") == "1"
CAPTCHA_TIMEOUT = 10  # minutes a challenge stays valid
CAPTCHA_LENGTH = 5
CAPTCHA_2X_IMAGE = False
CAPTCHA_IMAGE_SIZE = (160, 50)  # the template's <img width/height>
CAPTCHA_FONT_SIZE = 30

ALLOWED_HOSTS = [h for h in os.environ.get("KAMI_ALLOWED_HOSTS", "*").split(",") if h]
CSRF_TRUSTED_ORIGINS = [KAMI_BASE_URL] if KAMI_BASE_URL.startswith("http") else []
# Reverse proxies whose X-Forwarded-For / X-Forwarded-Proto are believed (kami.core.net); from any
# other peer those headers are removed. KAMI_BEHIND_PROXY=1 is short for a proxy on this machine.
try:
    KAMI_TRUSTED_PROXIES = trusted_networks_parse(
        os.environ.get("KAMI_TRUSTED_PROXIES", "") or ("127.0.0.1,::1" if os.environ.get("KAMI_BEHIND_PROXY") == "1" else ""))
except ValueError as exc:
    raise ImproperlyConfigured(str(exc)) from None
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https") if KAMI_TRUSTED_PROXIES else None

INSTALLED_APPS = [
    # The back office is Django's admin on a site of our own (kami.backoffice.site); the simple
    # config skips autodiscovery, so nothing lands on an unguarded default site.
    "django.contrib.admin.apps.SimpleAdminConfig",
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "kami.core",
    "kami.catalog",
    "kami.stock",
    "kami.orders",
    "kami.payments",
    "kami.delivery",
    "kami.webhooks",
    "kami.audit",
    "kami.fulfilment",
    "kami.api",
    "ninja",  # serves the merchant API's docs page (Swagger UI) from its static files, not a CDN
    "kami.storefront",
    "kami.telegram",
    "kami.cli",
    "captcha",
    "django_otp",
    "django_otp.plugins.otp_totp",
    "axes",
    # Last: its post_migrate hook gives the staff roles their permissions once every app's exist.
    "kami.backoffice",
]

MIDDLEWARE = [
    "kami.core.net.ForwardedHeadersMiddleware",  # first: nothing reads a forged X-Forwarded-* header
    "kami.core.middleware.BodyLimitMiddleware",  # 413 for an oversized body, before anything reads it
    "django.middleware.security.SecurityMiddleware",
    "kami.core.middleware.SecurityHeadersMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django_otp.middleware.OTPMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "kami.core.middleware.StorageFullMiddleware",  # a view's exception only: a full disk is a 503, not a 500
    "axes.middleware.AxesMiddleware",  # last, as django-axes asks
]

ROOT_URLCONF = "kami.urls"

# Back office (kami.backoffice; docs/backoffice.md). The path is the merchant's choice or, unset,
# generated once per data dir: a shop's admin is never at a guessable /admin/.
KAMI_ADMIN_PATH = datadir.admin_path()
# Who must use two-factor: `all` staff (default: operators refund, change prices, make coupons),
# or `owners` only, an explicit opt-out (kami.staff.policy.totp_policy_warning).
KAMI_ADMIN_TOTP = os.environ.get("KAMI_ADMIN_TOTP", "all")
if KAMI_ADMIN_TOTP not in ("all", "owners"):
    raise ImproperlyConfigured(f"KAMI_ADMIN_TOTP={KAMI_ADMIN_TOTP!r}: use all (every staff member) or owners")
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",  # refuses locked-out logins before the password is tried
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = int(os.environ.get("KAMI_ADMIN_LOGIN_ATTEMPTS", "5"))
AXES_COOLOFF_TIME = timedelta(minutes=int(os.environ.get("KAMI_ADMIN_LOCKOUT_MINUTES", "15")))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_CALLABLE = "kami.backoffice.views.locked_out"
# kami.core.net.client_ip, like every other per-IP rule: forwarded headers only from trusted proxies.
AXES_CLIENT_IP_CALLABLE = "kami.backoffice.auth.client_ip"
AXES_VERBOSE = False
# Staff sessions end after a working day or when the browser closes, whichever comes first.
SESSION_COOKIE_AGE = int(os.environ.get("KAMI_ADMIN_SESSION_HOURS", "8")) * 3600
SESSION_EXPIRE_AT_BROWSER_CLOSE = True
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 10}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
OTP_TOTP_ISSUER = KAMI_SHOP_NAME
WSGI_APPLICATION = "kami.wsgi.application"
APPEND_SLASH = False

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.template.context_processors.i18n",
                "django.contrib.messages.context_processors.messages",
                "kami.storefront.context.shop",
            ]
        },
    }
]


def _database(url: str) -> dict:
    config = dj_database_url.parse(url, conn_max_age=0)
    engine = config["ENGINE"]
    # Connections kept across requests (one per server thread): connecting to a server costs more
    # than a notification, and opening SQLite runs the PRAGMAs below and registers Django's SQL
    # functions, more than a cached storefront page's queries (docs/performance.md).
    config["CONN_MAX_AGE"] = int(os.environ.get("KAMI_DB_CONN_MAX_AGE", "60"))
    config["CONN_HEALTH_CHECKS"] = engine != "django.db.backends.sqlite3"  # a server may restart under them
    if engine == "django.db.backends.sqlite3":
        # WAL lets readers run beside the one writer; IMMEDIATE takes the write lock at BEGIN so
        # two confirm transactions never deadlock upgrading read locks. synchronous=FULL: a commit
        # (an acknowledged payment) survives power loss; under NORMAL the gateway, already told
        # "success", would never send it again.
        config["OPTIONS"] = {
            "transaction_mode": "IMMEDIATE",
            "timeout": 20,
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA busy_timeout=20000;",
        }
    elif engine == "django.db.backends.mysql":
        try:
            import MySQLdb  # noqa: F401  (mysqlclient, when installed, is faster)
        except ImportError:
            import pymysql

            pymysql.install_as_MySQLdb()
        # READ COMMITTED (Django's default for MySQL, stated here so it is never lost): at
        # REPEATABLE READ, gap locks collapse claim throughput (DESIGN.md §7).
        config["OPTIONS"] = {"charset": "utf8mb4", "isolation_level": "read committed"}
        config["TEST"] = {"CHARSET": "utf8mb4", "COLLATION": "utf8mb4_unicode_ci"}
    elif engine == "django.db.backends.postgresql":
        config.setdefault("OPTIONS", {})
    return config


DATABASE_URL = os.environ.get("DATABASE_URL") or f"sqlite:///{DATA_DIR / 'kami.sqlite3'}"
DATABASES = {"default": _database(DATABASE_URL)}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# The cache holds the rate-limit counters and the shop's settings, shared by every process that
# uses it. Default: files in the data dir (diskcache, SQLite underneath; kami.core.cache), shared
# by the `kami serve` processes of one machine. Several machines share a Redis instead:
# KAMI_REDIS_URL=redis://host:6379/0 (docs/scaling.md).
KAMI_REDIS_URL = os.environ.get("KAMI_REDIS_URL", "")
if KAMI_REDIS_URL:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": KAMI_REDIS_URL}}
else:
    CACHES = {"default": {"BACKEND": "kami.core.cache.MachineCache", "LOCATION": str(DATA_DIR / "cache"),
                          "OPTIONS": {"size_limit": 64 * 2**20}}}
# Drawn storefront pages (kami.storefront.fragments) apart from the counters: pages come and go
# with every stock change and must never push a counter out. Their keys are digests of what they
# show, so none goes stale: TIMEOUT and MAX_ENTRIES only bound the memory.
if KAMI_REDIS_URL:
    CACHES["storefront"] = {**CACHES["default"], "KEY_PREFIX": "kami-pages", "TIMEOUT": 600}
else:  # per process: a page drawn twice costs less than a file read per card
    CACHES["storefront"] = {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "kami-storefront",
                            "TIMEOUT": 600, "OPTIONS": {"MAX_ENTRIES": 2000}}

EMAIL_URL = os.environ.get("EMAIL_URL", "")
if EMAIL_URL:
    _email = dj_email_url.parse(EMAIL_URL)
    EMAIL_BACKEND = _email["EMAIL_BACKEND"]
    EMAIL_HOST = _email["EMAIL_HOST"]
    EMAIL_PORT = _email["EMAIL_PORT"]
    EMAIL_HOST_USER = _email["EMAIL_HOST_USER"]
    EMAIL_HOST_PASSWORD = _email["EMAIL_HOST_PASSWORD"]
    EMAIL_USE_TLS = _email["EMAIL_USE_TLS"]
    EMAIL_USE_SSL = _email["EMAIL_USE_SSL"]
    EMAIL_FILE_PATH = _email.get("EMAIL_FILE_PATH") or str(DATA_DIR / "mail")
else:
    EMAIL_BACKEND = "django.core.mail.backends.filebased.EmailBackend"
    EMAIL_FILE_PATH = str(DATA_DIR / "mail")
EMAIL_TIMEOUT = int(os.environ.get("KAMI_EMAIL_TIMEOUT", "20"))
# At most this many emails a second from each worker process, its senders together; 0: no limit.
# A provider's sending limit (Amazon SES starts at 14 a second) answers a faster worker with 454
# "throttling", and each throttled email waits for a retry's backoff (kami/delivery/channels/email.py).
_rate = os.environ.get("KAMI_EMAIL_RATE", "0")
try:
    KAMI_EMAIL_RATE = float(_rate)
except ValueError:
    KAMI_EMAIL_RATE = float("nan")
if not 0 <= KAMI_EMAIL_RATE <= 10000:  # nan (not a number, or "nan") fails this too
    raise ImproperlyConfigured(f"KAMI_EMAIL_RATE={_rate!r}: give the emails a second your mail provider allows each "
                               "worker (e.g. 14 for Amazon SES's first limit), or 0 for no limit")
DEFAULT_FROM_EMAIL = os.environ.get("KAMI_FROM_EMAIL", "Kami <noreply@localhost>")
SERVER_EMAIL = DEFAULT_FROM_EMAIL

LANGUAGE_CODE = "zh-hans"
LANGUAGES = [("zh-hans", "简体中文"), ("en", "English")]
LOCALE_PATHS = [BASE_DIR / "locale"]
TIME_ZONE = os.environ.get("KAMI_TIME_ZONE", "Asia/Shanghai")
USE_I18N = True
USE_TZ = True

STATIC_URL = "/static/"
STATIC_ROOT = DATA_DIR / "static"
STATIC_ROOT.mkdir(exist_ok=True)
WHITENOISE_USE_FINDERS = True

SESSION_COOKIE_HTTPONLY = True
# A shop whose address is https (production or not) marks its cookies Secure and sends HSTS, on
# secure requests only (SecurityMiddleware; behind a TLS-terminating proxy set KAMI_TRUSTED_PROXIES).
SESSION_COOKIE_SECURE = KAMI_BASE_URL.startswith("https://")
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_HSTS_SECONDS = 31536000 if SESSION_COOKIE_SECURE else 0
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"

# Request bodies (kami.core.middleware.BodyLimitMiddleware, 413 by declared size): the back office
# accepts up to KAMI_REQUEST_MAX_BYTES (a key file of KAMI_IMPORT_MAX_BYTES and its form), every
# other path DATA_UPLOAD_MAX_MEMORY_SIZE. `kami serve` refuses larger bodies before reading them.
DATA_UPLOAD_MAX_MEMORY_SIZE = 2 * 1024 * 1024
KAMI_REQUEST_MAX_BYTES = KAMI_IMPORT_MAX_BYTES + 1024 * 1024

class IsoTimeFormatter(logging.Formatter):
    """Log times in ISO 8601, in UTC with its offset written out (2026-12-04T18:51:21.123+00:00):
    unambiguous whatever the machine's or Django's time zone, and sortable across machines."""

    def formatTime(self, record, datefmt=None):  # noqa: N802 (logging's name)
        return datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds")


# Observability (docs/operations.md, "Metrics" and "Logs"). /metrics is off unless one of these is
# set: a bearer token for Prometheus, or scrapes from this machine (direct, not through a proxy).
KAMI_METRICS_TOKEN = os.environ.get("KAMI_METRICS_TOKEN", "")
KAMI_METRICS_LOOPBACK = os.environ.get("KAMI_METRICS_LOOPBACK", "") == "1"
KAMI_METRICS_MAX_PRODUCTS = int(os.environ.get("KAMI_METRICS_MAX_PRODUCTS", "200"))  # kami_keys_available's cap
# text (default): "<time> LEVEL logger: message"; json: one JSON object per line (kami/ops/logformat.py).
KAMI_LOG_FORMAT = os.environ.get("KAMI_LOG_FORMAT", "text")
if KAMI_LOG_FORMAT not in ("text", "json"):
    raise ImproperlyConfigured(f"KAMI_LOG_FORMAT={KAMI_LOG_FORMAT!r}: use text or json")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"()": IsoTimeFormatter, "format": "%(asctime)s %(levelname)s %(name)s: %(message)s"},
                   "json": {"()": "kami.ops.logformat.JsonFormatter"}},
    # request_id and order_no on each record of a request (kami/core/logcontext.py; JSON writes them)
    "filters": {"context": {"()": "kami.core.logcontext.ContextFilter"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "filters": ["context"],
                             "formatter": "json" if KAMI_LOG_FORMAT == "json" else "plain"}},
    "root": {"handlers": ["console"], "level": os.environ.get("KAMI_LOG_LEVEL", "INFO")},
    "loggers": {"django.db.backends": {"level": "INFO"},
                # Lockouts and failures still log; every successful sign-in need not.
                "axes": {"level": os.environ.get("KAMI_AXES_LOG_LEVEL", "WARNING")},
                # waitress warns "Task queue depth is N" for every request that waits for a thread:
                # in a sale, one line per notification (and its formatting on the server's CPU) while
                # the group commit is doing its job. The batch sizes are logged at exit instead.
                "waitress.queue": {"level": "ERROR"}},
}
