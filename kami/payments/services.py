"""Configuring gateways. Secrets are stored encrypted and never shown back."""
from __future__ import annotations

import secrets as pysecrets
from datetime import timedelta

from django.conf import settings
from django.db import transaction

from kami.audit.services import audit_record
from kami.core import clock
from kami.core.errors import BadInput
from kami.payments.models import GatewayAccount, Notification
from kami.payments.registry import gateway_class, secrets_decrypt, secrets_encrypt


def gateway_configure(*, name: str, values: dict[str, str], enable: bool | None = None, actor: str = "cli",
                      ip: str = "") -> GatewayAccount:
    """Merge `values` into the gateway's settings (secret names go to the encrypted part), and
    enable or disable it. A gateway with incomplete settings cannot be enabled."""
    cls = gateway_class(name)
    if enable and name == "sandbox" and settings.PRODUCTION:
        raise BadInput("the sandbox gateway cannot be enabled in production (KAMI_ENV=production)")
    secret_names = cls.secret_names()
    unknown = sorted(set(values) - set(cls.setting_names()))
    if unknown:  # a typo is refused, not stored
        raise BadInput(f"{name}: unknown setting {unknown[0]!r}; {name} takes {', '.join(cls.setting_names())}")
    with transaction.atomic():  # read-modify-write of one account row
        account, _ = GatewayAccount.objects.select_for_update().get_or_create(name=name)
        config, secret = dict(account.config), secrets_decrypt(account)
        for key, value in values.items():
            (secret if key in secret_names else config)[key] = value
        config = cls.config_clean(config)
        if name == "sandbox" and not secret.get("secret"):
            secret["secret"] = pysecrets.token_hex(32)
        if enable or (enable is None and account.enabled):  # an enabled gateway stays complete
            missing = [k for k in cls.required_config if not config.get(k)] + [k for k in cls.required_secrets if not secret.get(k)]
            if missing:
                verb = "cannot enable, missing" if enable else "is enabled and needs"
                raise BadInput(f"{name}: {verb} {', '.join(missing)} (kami gateway set {name} {missing[0]}=…)")
        account.config = config
        account.secrets_key_id, account.secrets_ciphertext = secrets_encrypt(name, secret)
        if enable is not None:
            account.enabled = enable
        account.save()
        audit_record(actor=actor, action="gateway.configure", obj_type="gateway", obj_id=name, ip=ip,
                     changed=sorted(values), enabled=account.enabled)
    return account


def gateway_check(*, name: str) -> list[str]:
    """Problems with a gateway's stored settings, found offline (no request leaves the machine):
    missing settings, then the gateway's own checks (key formats, URLs). Empty: it looks right."""
    cls = gateway_class(name)
    account = GatewayAccount.objects.filter(name=name).first()
    config = dict(account.config) if account else {}
    stored = secrets_decrypt(account) if account else {}
    problems = [f"{k} is missing (kami gateway set {name} {k}=…)" for k in cls.required_config if not config.get(k)]
    problems += [f"secret {k} is missing (kami gateway set {name} {k}=…)" for k in cls.required_secrets if not stored.get(k)]
    return problems or list(cls(config=config, secrets=stored).check())


def notifications_prune(*, older_than: timedelta, batch: int = 500) -> int:
    """Delete rejected (unverified) notifications received more than `older_than` ago, `batch`
    rows per statement so a flood's worth never holds one long transaction. Verified rows, and
    rows kept for a retry (error), stay: they are the record of money that moved."""
    cutoff, deleted = clock.now() - older_than, 0
    old = Notification.objects.filter(result=Notification.Result.REJECTED, verified=False, received_at__lt=cutoff)
    while True:
        ids = list(old.order_by("id").values_list("id", flat=True)[:batch])
        if not ids:
            return deleted
        deleted += Notification.objects.filter(id__in=ids).delete()[0]
