"""`kami doctor`: is this deployment sound? One `Check` per concern, each a line saying what is
wrong and what to do. Nothing here changes anything (no data key is generated, no mail is sent).

The worker check reads the workers' heartbeat rows (kami/delivery/heartbeats.py): it fails when
none was seen within KAMI_WORKER_LATE_SECONDS (a brand-new shop, with no order and no worker ever,
only gets a warning), and also when a delivery waits past its time, whatever the heartbeats say."""
from __future__ import annotations

import os
import shutil
import smtplib
import ssl
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.db.models import Max

from kami.core import clock
from kami.core.crypto import KeyringError, keyring
from kami.core.datadir import keyring_present

OK, WARN, FAIL, SKIP = "ok", "warn", "FAIL", "skip"


@dataclass(frozen=True)
class Check:
    name: str
    status: str  # ok | warn | FAIL | skip; only FAIL fails the doctor
    detail: str

    def line(self) -> str:
        return f"{self.status:<4}  {self.name}: {self.detail}"


def doctor_run(*, min_free_mb: int = 1024, smtp_timeout: float = 5.0) -> list[Check]:
    checks = [settings_check(), base_url_check(), database_check()]
    database_ok = checks[-1].status == OK
    checks.append(data_key_check(database_ok=database_ok))
    checks.append(smtp_check(timeout=smtp_timeout))
    if not database_ok:
        checks.append(Check("gateways", SKIP, "the database is not ready"))
    elif not keyring_present():  # reading gateway secrets would generate a new, useless data key
        checks.append(Check("gateways", SKIP, "no data key to open their secrets with"))
    else:
        checks += gateway_checks()
    checks.append(worker_check() if database_ok else Check("worker", SKIP, "the database is not ready"))
    checks.append(disk_check(min_free_mb=min_free_mb))
    return checks


def settings_check() -> Check:
    env = os.environ.get("KAMI_ENV", "development")
    if env not in ("development", "production"):
        return Check("settings", FAIL, f"KAMI_ENV={env!r} is neither development nor production: set KAMI_ENV=production")
    if not settings.PRODUCTION:
        return Check("settings", WARN, "KAMI_ENV is not production: set KAMI_ENV=production on a shop that takes money")
    advice = []
    if not settings.KAMI_ADMIN_EMAIL:
        advice.append("KAMI_ADMIN_EMAIL is not set: alerts reach only the log")
    if "*" in settings.ALLOWED_HOSTS:
        advice.append("KAMI_ALLOWED_HOSTS is not set: set it to your shop's host name")
    return Check("settings", WARN, "; ".join(advice)) if advice else Check("settings", OK, "production")


def base_url_check() -> Check:
    base = settings.KAMI_BASE_URL
    if base.startswith("https://"):
        return Check("base URL", OK, base)
    if settings.PRODUCTION:
        return Check("base URL", FAIL, f"{base} is not https: set KAMI_BASE_URL=https://your.shop (gateways call "
                                       "it, and buyers' key links travel over it)")
    return Check("base URL", OK, f"{base} (http is for development only)")


def database_check() -> Check:
    where = f"{connection.vendor} {connection.settings_dict.get('NAME')}"
    try:
        connection.ensure_connection()
        executor = MigrationExecutor(connection)
        plan = executor.migration_plan(executor.loader.graph.leaf_nodes())
        applied = executor.loader.applied_migrations
    except Exception as exc:  # noqa: BLE001 — whatever the driver raises, the merchant needs one line
        return Check("database", FAIL, f"cannot use {where}: {_first_line(exc)}: check DATABASE_URL and that the server runs")
    if plan and not applied:
        return Check("database", FAIL, f"{where} is empty: run `kami migrate` (it creates the tables)")
    if plan:
        return Check("database", FAIL, f"{where}: {len(plan)} migration(s) not applied: run `kami migrate`")
    return Check("database", OK, f"{where}, reachable and migrated")


def data_key_check(*, database_ok: bool) -> Check:
    where = "KAMI_DATA_KEY" if os.environ.get("KAMI_DATA_KEY") else str(settings.DATA_DIR / "data_key")
    if not keyring_present():
        if database_ok and _keys_stored():
            return Check("data key", FAIL, f"no data key at {where}, and keys are stored: none of them opens without it; "
                                           "restore it from your backup (kami restore, or set KAMI_DATA_KEY)")
        return Check("data key", WARN, f"none yet at {where} (made with the first key import; back it up then)")
    try:
        ring = keyring()
    except KeyringError as exc:
        return Check("data key", FAIL, f"{where}: {exc}")
    if not database_ok:
        return Check("data key", SKIP, f"{where} parses ({len(ring.keys)} key(s)); stored keys not tried: the database is not ready")
    return _stored_keys_open(where, ring.keys, ring.primary_id)


def _keys_stored() -> bool:
    from kami.stock.models import Key

    return Key.objects.exists()


def _stored_keys_open(where: str, ring_ids, primary_id: str) -> Check:
    """Open the newest stored key sealed under each data key id in use: proof that the keyring
    here is the one the database was filled with. The plaintext is dropped at once."""
    from kami.stock.models import Key
    from kami.stock.vault import key_open

    newest = Key.objects.values("key_id").annotate(last=Max("id"))
    used = {row["key_id"]: row["last"] for row in newest}
    missing = sorted(set(used) - set(ring_ids))
    if missing:
        return Check("data key", FAIL, f"stored keys are sealed with data key {missing[0]!r}, which {where} does not "
                                       "hold: restore the data key from your backup (kami restore)")
    for key_id, pk in sorted(used.items()):
        try:
            key_open(Key.objects.get(pk=pk))
        except Exception as exc:  # noqa: BLE001 — InvalidTag, KeyMisplaced: the wrong key under the right id
            return Check("data key", FAIL, f"data key {key_id!r} at {where} does not open stored key #{pk} "
                                           f"({type(exc).__name__}): it is not the key these were sealed with; restore it from your backup")
    older = sorted(set(used) - {primary_id})
    if older:  # a rotation cut short, or a new key put first by hand: the old one cannot be retired yet
        return Check("data key", WARN, f"{where} opens stored keys, but some are still sealed with older data key(s) "
                                       f"{', '.join(older)}: run `kami keys rotate-data-key --resume` to move them to "
                                       f"{primary_id!r} (docs/operations.md, \"Rotating the data key\")")
    return Check("data key", OK, f"{where} opens stored keys (data key ids in use: {', '.join(sorted(used)) or 'none yet'})")


def smtp_check(*, timeout: float) -> Check:
    if not settings.EMAIL_URL:
        status = FAIL if settings.PRODUCTION else WARN
        return Check("email", status, f"EMAIL_URL is not set: emails are written to {settings.EMAIL_FILE_PATH}, "
                                      "not sent: set EMAIL_URL=smtp://user:pass@host:587/?tls=True")
    host, port = settings.EMAIL_HOST, settings.EMAIL_PORT
    try:
        _smtp_hello(host, port, timeout=timeout)
    except (OSError, smtplib.SMTPException) as exc:
        return Check("email", FAIL, f"SMTP server {host}:{port} does not answer ({_first_line(exc)}): check EMAIL_URL")
    return Check("email", OK, f"SMTP server {host}:{port} answers EHLO" + (" and STARTTLS" if settings.EMAIL_USE_TLS else ""))


def _smtp_hello(host: str, port: int, *, timeout: float) -> None:
    """Connect and EHLO (and STARTTLS when EMAIL_URL asks for it); no login, no mail."""
    context = ssl.create_default_context()
    if settings.EMAIL_USE_SSL:
        client = smtplib.SMTP_SSL(host, port, timeout=timeout, context=context)
    else:
        client = smtplib.SMTP(host, port, timeout=timeout)
    with client:
        code, _ = client.ehlo()
        if code != 250:
            raise smtplib.SMTPException(f"EHLO answered {code}")
        if settings.EMAIL_USE_TLS and not settings.EMAIL_USE_SSL:
            client.starttls(context=context)
            client.ehlo()


def gateway_checks() -> list[Check]:
    from kami.payments.models import GatewayAccount
    from kami.payments.services import gateway_check

    names = list(GatewayAccount.objects.filter(enabled=True).order_by("name").values_list("name", flat=True))
    if not names:
        return [Check("gateways", WARN, "none enabled: buyers cannot pay (kami gateway set NAME --enable …)")]
    checks = []
    for name in names:
        try:
            problems = gateway_check(name=name)
        except Exception as exc:  # noqa: BLE001 — an unknown or broken gateway row: say which
            problems = [_first_line(exc)]
        if name == "sandbox" and settings.PRODUCTION:
            problems.insert(0, "the sandbox pays any order for free: kami gateway set sandbox --disable")
        checks.append(Check(f"gateway {name}", FAIL, "; ".join(problems)) if problems else
                      Check(f"gateway {name}", OK, "settings complete (checked offline)"))
    return checks


def worker_check() -> Check:
    """Running workers from their heartbeats (kami/delivery/heartbeats.py), and deliveries
    waiting past their time (a worker that beats but does not deliver is no better)."""
    from kami.delivery.models import OutboxMessage
    from kami.delivery.selectors import delivery_health
    from kami.orders.models import Order

    now = clock.now()
    health = delivery_health(now=now)
    workers, running, last = list(health.workers), list(health.running), health.last_attempt_at
    seen = f"last delivery attempt {_ago(now - last)} ago" if last else "no delivery attempted yet"
    if health.overdue:
        return Check("worker", FAIL, f"{health.overdue} delivery(ies) due {_ago(now - health.oldest_overdue_at)} ago "
                                     f"and not sent, {seen}; "
                                     f"{_workers_line(workers, running)}: is `kami worker` running? "
                                     "(systemctl status kami-worker)")
    if running:
        return Check("worker", OK, f"{_workers_line(workers, running)}; no delivery overdue; {seen}")
    start = "start `kami worker` (systemctl start kami-worker; `kami serve` starts one unless --no-worker)"
    if workers:
        return Check("worker", FAIL, f"{_workers_line(workers, running)}: {start}")
    if Order.objects.exists() or OutboxMessage.objects.exists():
        return Check("worker", FAIL, f"no worker has ever run on this shop, and it has orders: {start}")
    return Check("worker", WARN, f"no worker seen yet (a new shop, no order so far): {start} before the first sale")


def _workers_line(workers, running) -> str:
    """"worker: 2 running, last seen 3s ago", or the most recently seen worker that stopped."""
    if running:
        return f"{len(running)} running, last seen {_ago(timedelta(seconds=running[0].age_seconds))} ago"
    if not workers:
        return "no worker heartbeat ever recorded"
    last, late = workers[0], int(settings.KAMI_WORKER_LATE_SECONDS)
    more = f"; {len(workers) - 1} older heartbeat row(s)" if len(workers) > 1 else ""
    if last.stopped_at is not None:
        return (f"no worker running: {last.name} stopped cleanly {_ago(timedelta(seconds=last.age_seconds))} ago{more}")
    return (f"no worker running: {last.name} last seen {_ago(timedelta(seconds=last.age_seconds))} ago (more than "
            f"{late}s: killed, or stuck in one pass){more}")


def disk_check(*, min_free_mb: int) -> Check:
    usage = shutil.disk_usage(settings.DATA_DIR)
    free_mb = usage.free // (1024 * 1024)
    detail = f"{free_mb:,} MiB free in {settings.DATA_DIR} ({usage.free * 100 // usage.total}%)"
    if free_mb < min_free_mb:
        return Check("disk", FAIL, f"{detail}, less than {min_free_mb:,} MiB: free some space (old backups, logs)")
    return Check("disk", OK, detail)


def _ago(delta: timedelta) -> str:
    seconds = max(0, int(delta.total_seconds()))
    return f"{seconds}s" if seconds < 120 else f"{seconds // 60} min" if seconds < 7200 else f"{seconds // 3600} h"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else type(exc).__name__
