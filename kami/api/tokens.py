"""Merchant API tokens: made (shown once), listed, revoked, checked on each request."""
from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from datetime import timedelta

from django.db import IntegrityError, transaction

from kami.api.models import SCOPES, ApiToken
from kami.audit.services import audit_record
from kami.core import clock
from kami.core.crypto import token_hash
from kami.core.errors import BadInput, NotFound

TOKEN_PREFIX = "kami_"
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
# last_used_at is written at most this often per token: a busy integration must not turn every
# read into a write.
LAST_USED_STEP = timedelta(seconds=60)


@dataclass(frozen=True)
class NewToken:
    token: ApiToken
    secret: str  # the bearer token itself: shown once, never stored

    def __repr__(self) -> str:
        return f"NewToken({self.token.name!r}, {self.token.prefix}…)"


def scopes_parse(text: str | list[str]) -> list[str]:
    """'read,stock' or ['read', 'stock'] → the scopes in their canonical order."""
    words = text.split(",") if isinstance(text, str) else list(text)
    wanted = {w.strip() for w in words if w.strip()}
    unknown = sorted(wanted - set(SCOPES))
    if unknown:
        raise BadInput(f"scopes: {', '.join(unknown)} unknown; choose from {', '.join(SCOPES)}")
    if not wanted:
        raise BadInput(f"scopes: give at least one of {', '.join(SCOPES)}")
    return [s for s in SCOPES if s in wanted]


def api_token_create(*, name: str, scopes: str | list[str], actor: str, ip: str = "") -> NewToken:
    name = (name or "").strip()
    if not NAME.match(name):
        raise BadInput(f"name {name!r}: 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit")
    scope_list = scopes_parse(scopes)
    secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
    try:
        with transaction.atomic():  # the token and its audit row together
            token = ApiToken.objects.create(name=name, prefix=secret[:len(TOKEN_PREFIX) + 6],
                                            token_hash=token_hash(secret), scopes=scope_list,
                                            created_at=clock.now(), created_by=actor[:150])
            audit_record(actor=actor, action="api_token.create", obj_type="api_token", obj_id=name, ip=ip,
                         scopes=scope_list)
    except IntegrityError:
        raise BadInput(f"a token named {name!r} exists already: choose another name, or revoke it first "
                       "(`kami api token revoke NAME`)") from None
    return NewToken(token=token, secret=secret)


def api_tokens_list() -> list[ApiToken]:
    return list(ApiToken.objects.order_by("revoked_at", "name"))


def api_token_revoke(*, name: str, actor: str, ip: str = "") -> ApiToken:
    """Revoke for good: the token stops working at once; its name is freed for a new token."""
    with transaction.atomic():  # the revocation and its audit row together
        token = ApiToken.objects.select_for_update().filter(name=name, revoked_at__isnull=True).first()
        if token is None:
            raise NotFound(f"no active token named {name!r}; `kami api token list` shows them")
        token.revoked_at = clock.now()
        # Renamed so the name can be used again; the hash stays, so the old secret keeps failing.
        token.name = f"{token.name[:40]}~revoked-{token.pk}"
        token.save(update_fields=["revoked_at", "name"])
        audit_record(actor=actor, action="api_token.revoke", obj_type="api_token", obj_id=name, ip=ip)
    return token


def api_token_authenticate(*, secret: str) -> ApiToken | None:
    """The active token with this secret, or None (unknown and revoked look the same)."""
    if not secret or not secret.startswith(TOKEN_PREFIX) or len(secret) > 128:
        return None
    token = ApiToken.objects.filter(token_hash=token_hash(secret), revoked_at__isnull=True).first()
    if token is None:
        return None
    now = clock.now()
    if token.last_used_at is None or now - token.last_used_at >= LAST_USED_STEP:
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
        token.last_used_at = now
    return token
