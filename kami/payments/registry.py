"""Which gateway modules exist, and how to build one from its stored settings."""
from __future__ import annotations

import inspect
import json
import pkgutil
import time
from dataclasses import dataclass
from importlib import import_module

from django.conf import settings
from django.db import connection, transaction
from django.db.models.signals import post_delete, post_migrate, post_save
from django.dispatch import receiver

from kami.core.crypto import keyring
from kami.core.errors import NotFound
from kami.payments import gateways as gateways_package
from kami.payments.interface import Gateway
from kami.payments.models import GatewayAccount


def _discover() -> dict[str, type[Gateway]]:
    """Every Gateway subclass defined in a module of kami.payments.gateways, by its `name`:
    adding a gateway is adding its module, nothing to register."""
    found: dict[str, type[Gateway]] = {}
    for info in pkgutil.iter_modules(gateways_package.__path__):
        module = import_module(f"{gateways_package.__name__}.{info.name}")
        for obj in vars(module).values():
            if isinstance(obj, type) and issubclass(obj, Gateway) and obj.__module__ == module.__name__ \
                    and not inspect.isabstract(obj):
                found[obj.name] = obj
    return found


GATEWAYS: dict[str, type[Gateway]] = _discover()


def gateway_class(name: str) -> type[Gateway]:
    try:
        return GATEWAYS[name]
    except KeyError:
        raise NotFound(f"unknown gateway {name!r}; known: {', '.join(sorted(GATEWAYS))}") from None


def _aad(name: str) -> bytes:
    return f"gateway:{name}".encode()


def secrets_decrypt(account: GatewayAccount) -> dict:
    if not account.secrets_ciphertext:
        return {}
    text = keyring().decrypt(account.secrets_key_id, account.secrets_ciphertext, aad=_aad(account.name))
    return json.loads(text.reveal())


def secrets_encrypt(name: str, secrets: dict) -> tuple[str, bytes]:
    return keyring().encrypt(json.dumps(secrets, sort_keys=True), aad=_aad(name))


def gateway_get(name: str, *, require_enabled: bool = True) -> Gateway:
    """The configured gateway `name`. Unknown or (by default) disabled gateways are NotFound."""
    cls = gateway_class(name)
    account = _account(name)
    if account is None or (require_enabled and not _live(name, account)):
        raise NotFound(f"gateway {name!r} is not enabled")
    return _made(cls, account)


def gateway_cached(name: str) -> Gateway | None:
    """`gateway_get(name)` when this process holds its account and it is enabled, without reading the
    database (an event loop must not); None otherwise: ask gateway_get, in a thread."""
    hit = _accounts.get(name)
    if hit is None or hit[0] <= time.monotonic() or hit[1] is None or not _live(name, hit[1]):
        return None
    return _made(gateway_class(name), hit[1])  # this hit, not a second look that could expire and read


def _made(cls: type[Gateway], account: _Account) -> Gateway:
    return cls(config=dict(account.config), secrets=dict(account.secrets))


@dataclass(frozen=True)
class _Account:
    enabled: bool
    config: dict
    secrets: dict


# name → (monotonic deadline, account or None). Read on every notification, written by an
# operator a few times a year: each process keeps what it read for KAMI_GATEWAY_CACHE_SECONDS.
# A save made in this process (any save: the post_save receiver below) drops the entry at once and again at commit;
# other processes see it within the TTL. A version check would cost a round trip, which is what
# the row read costs: the TTL is the cheaper bound (docs/performance.md). Only reads made in
# autocommit are kept: a read inside a transaction may see rows that roll back.
_accounts: dict[str, tuple[float, _Account | None]] = {}


def _account(name: str) -> _Account | None:
    hit = _accounts.get(name)
    if hit is not None and hit[0] > time.monotonic():
        return hit[1]
    row = GatewayAccount.objects.filter(name=name).first()
    account = row and _Account(enabled=row.enabled, config=dict(row.config), secrets=secrets_decrypt(row))
    ttl = settings.KAMI_GATEWAY_CACHE_SECONDS
    if ttl > 0 and connection.get_autocommit():
        _accounts[name] = (time.monotonic() + ttl, account)
    return account


def gateway_cache_clear(name: str | None = None) -> None:
    """Forget the cached account `name` (all of them by default), now and when the current
    transaction commits (a read between the two would otherwise cache the old row)."""
    def clear() -> None:
        _accounts.pop(name, None) if name else _accounts.clear()
    clear()
    transaction.on_commit(clear)


# Not domain flow, only this process's copy: any save of an account here (gateway_configure, the
# back office, a test) drops it; `migrate` and `flush` (tests) replace the rows wholesale.
@receiver(post_save, sender=GatewayAccount)
@receiver(post_delete, sender=GatewayAccount)
def _forget_saved(*, instance: GatewayAccount, **kwargs) -> None:
    gateway_cache_clear(instance.name)


@receiver(post_migrate)
def _forget_after_migrate(**kwargs) -> None:
    _accounts.clear()


def _live(name: str, account: _Account) -> bool:
    return account.enabled and _allowed(name)


def _allowed(name: str) -> bool:
    """The sandbox pays any order for free: it is live only in a process started with
    KAMI_SANDBOX=1 (`kami demo`), never in production, even if its row says enabled (a trial
    install's database kept for the real shop)."""
    return name != "sandbox" or sandbox_live()


def sandbox_live() -> bool:
    return settings.KAMI_SANDBOX and not settings.PRODUCTION


def gateways_enabled() -> list[str]:
    names = GatewayAccount.objects.filter(enabled=True, name__in=GATEWAYS).order_by("name").values_list("name", flat=True)
    return [name for name in names if _allowed(name)]
