"""Which gateway modules exist, and how to build one from its stored settings."""
from __future__ import annotations

import inspect
import json
import pkgutil
from importlib import import_module

from django.conf import settings

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
    account = GatewayAccount.objects.filter(name=name).first()
    if account is None or (require_enabled and not (account.enabled and _allowed(name))):
        raise NotFound(f"gateway {name!r} is not enabled")
    return cls(config=dict(account.config), secrets=secrets_decrypt(account))


def _allowed(name: str) -> bool:
    """The sandbox pays any order for free: in production it is off even if its row says
    enabled (a database copied from a trial install, or KAMI_ENV changed afterwards)."""
    return not (name == "sandbox" and settings.PRODUCTION)


def gateways_enabled() -> list[str]:
    names = GatewayAccount.objects.filter(enabled=True, name__in=GATEWAYS).order_by("name").values_list("name", flat=True)
    return [name for name in names if _allowed(name)]
