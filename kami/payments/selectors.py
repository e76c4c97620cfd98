"""Reading the gateways' configuration: the one overview `kami gateway list` and the back
office's gateways page both show."""
from __future__ import annotations

from dataclasses import dataclass, field

from django.conf import settings
from django.urls import reverse

from kami.payments.models import GatewayAccount
from kami.payments.registry import GATEWAYS, gateway_class, gateways_enabled, secrets_decrypt


@dataclass(frozen=True)
class SecretState:
    name: str
    is_set: bool
    required: bool


@dataclass(frozen=True)
class GatewayOverview:
    """One gateway as the merchant sees it, never with a secret's value: only whether it is set."""

    name: str
    label: str
    configured: bool  # a settings row exists
    enabled: bool  # as stored
    live: bool  # what buyers get: the registry's rule (the sandbox only with KAMI_SANDBOX, never in production)
    config: dict[str, str]  # the stored non-secret settings
    setting_names: list[str]  # the gateway's own settings, then any other name stored
    required_config: tuple[str, ...]
    secrets: list[SecretState] = field(default_factory=list)
    unreadable: bool = False  # the secrets' data key is missing from the keyring
    missing: list[str] = field(default_factory=list)  # required settings and secrets not set
    notify_url: str = ""


def notify_url(name: str) -> str:
    """The absolute URL gateway `name` notifies: what the merchant pastes into its settings."""
    return f"{settings.KAMI_BASE_URL}{reverse('pay-notify', args=[name])}"


def gateway_overview(name: str) -> GatewayOverview:
    """Gateway `name`; NotFound if Kami has no such module."""
    gateway_class(name)
    return _overview(name, GatewayAccount.objects.filter(name=name).first(), live=set(gateways_enabled()))


def gateways_overview() -> list[GatewayOverview]:
    """Every gateway Kami has a module for, by name, configured or not."""
    accounts = {a.name: a for a in GatewayAccount.objects.filter(name__in=GATEWAYS)}
    live = set(gateways_enabled())
    return [_overview(name, accounts.get(name), live=live) for name in sorted(GATEWAYS)]


def _overview(name: str, account: GatewayAccount | None, *, live: set[str]) -> GatewayOverview:
    cls = gateway_class(name)
    config = {k: str(v) for k, v in (account.config if account else {}).items()}
    known = [*cls.required_config, *cls.optional_config]
    try:
        stored = secrets_decrypt(account) if account else {}
        unreadable = False
    except Exception:  # a data key missing from the keyring: say so, do not fail the listing
        stored, unreadable = {}, True
    secrets = [SecretState(k, bool(stored.get(k)), k in cls.required_secrets) for k in cls.secret_names()]
    del stored  # secret values go no further than the set / not set flags above
    missing = [k for k in cls.required_config if not config.get(k)]
    missing += [s.name for s in secrets if s.required and not s.is_set and not unreadable]
    return GatewayOverview(name=name, label=str(cls.label), configured=account is not None,
                           enabled=bool(account and account.enabled), live=name in live, config=config,
                           setting_names=known + sorted(set(config) - set(known)), required_config=cls.required_config,
                           secrets=secrets, unreadable=unreadable, missing=missing, notify_url=notify_url(name))
