"""Merchant API tokens: shown once, stored hashed, scoped, revocable, last use recorded."""
from __future__ import annotations

import hashlib
import io
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from kami.api.models import ApiToken
from kami.audit.models import AuditLog
from kami.core import clock
from tests.api.conftest import Api, assert_problem


def kami(*args) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command(*args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def test_kami_api_token_add_prints_the_token_once_and_stores_only_its_hash(db):
    # when
    out, err = kami("api", "token", "add", "erp", "--scopes", "stock,read")
    # then
    secret = out.strip()
    token = ApiToken.objects.get(name="erp")
    assert secret.startswith("kami_") and len(secret) > 40
    assert token.token_hash == hashlib.sha256(secret.encode()).hexdigest()
    assert secret not in str(list(ApiToken.objects.values()))
    assert token.scopes == ["read", "stock"]
    assert "shown this once" in err
    assert AuditLog.objects.filter(action="api_token.create", object_id="erp", actor="cli").exists()
    listing, _ = kami("api", "token", "list")
    assert "erp" in listing and secret not in listing and token.prefix in listing


def test_unknown_scopes_and_taken_names_are_refused_with_the_fix(db):
    # given
    kami("api", "token", "add", "erp", "--scopes", "read")
    # when / then
    with pytest.raises(CommandError, match="refunds"):
        kami("api", "token", "add", "other", "--scopes", "read,admin")
    with pytest.raises(CommandError, match="exists already"):
        kami("api", "token", "add", "erp", "--scopes", "read")


def test_a_revoked_token_gets_401_at_once_and_its_name_is_free_again(db):
    # given
    secret = kami("api", "token", "add", "erp", "--scopes", "read")[0].strip()
    assert Api(secret).get("/products").status_code == 200
    # when
    out, _ = kami("api", "token", "revoke", "erp")
    # then
    assert "revoked erp" in out
    assert_problem(Api(secret).get("/products"), 401, "unauthorized")
    assert AuditLog.objects.filter(action="api_token.revoke", object_id="erp").exists()
    kami("api", "token", "add", "erp", "--scopes", "read")
    with pytest.raises(CommandError, match="no active token"):
        kami("api", "token", "revoke", "nobody")


def test_last_use_is_recorded_without_a_write_on_every_request(db):
    # given
    secret = kami("api", "token", "add", "erp", "--scopes", "read")[0].strip()
    assert ApiToken.objects.get(name="erp").last_used_at is None
    # when
    try:
        Api(secret).get("/products")
        first = ApiToken.objects.get(name="erp").last_used_at
        clock.travel(timedelta(seconds=10))
        Api(secret).get("/products")
        unchanged = ApiToken.objects.get(name="erp").last_used_at
        clock.travel(timedelta(seconds=120))
        Api(secret).get("/products")
        later = ApiToken.objects.get(name="erp").last_used_at
    finally:
        clock.travel(None)
    # then
    assert first is not None and unchanged == first and later > first
