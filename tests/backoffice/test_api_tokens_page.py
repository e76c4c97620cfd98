"""The back office's API tokens page: owners only; a new token shown once (the answer to the POST,
nowhere else), stored hashed, working at once; revocation stops it at once; audited."""
from __future__ import annotations

import re

import pytest
from django.utils import timezone, translation

from kami.api.models import ApiToken
from kami.audit.models import AuditLog
from kami.core.crypto import token_hash
from tests.api.conftest import Api, assert_problem
from tests.backoffice.staffing import admin_url, signed_in

pytestmark = pytest.mark.django_db
PAGE = "api-tokens/"


def secret_in(html: str) -> str:
    return re.search(r'<code class="bo-token-secret">(kami_[^<]+)</code>', html).group(1)


@pytest.mark.parametrize("role,allowed", [("owner", True), ("operator", False), ("support", False)])
def test_the_page_and_its_actions_are_for_owners_only(role, allowed):
    # given
    client = signed_in(role, f"{role}-tokens")
    ApiToken.objects.all().delete()
    # when
    page = client.get(admin_url(PAGE))
    made = client.post(admin_url(PAGE), {"name": "erp", "scopes": ["read"]})
    index = client.get(admin_url()).content.decode()
    # then
    assert page.status_code == made.status_code == (200 if allowed else 403)
    assert ApiToken.objects.filter(name="erp").exists() is allowed
    assert (admin_url(PAGE) in index) is allowed  # the Operations link


def test_a_new_token_is_shown_once_stored_hashed_works_and_is_audited():
    # given
    client = signed_in("owner", "owner-tokens")
    # when
    made = client.post(admin_url(PAGE), {"name": "erp", "scopes": ["read", "stock"]})
    # then
    assert made.status_code == 200 and "no-store" in made["Cache-Control"]
    secret = secret_in(made.content.decode())
    token = ApiToken.objects.get(name="erp")
    assert token.token_hash == token_hash(secret) and token.scopes == ["read", "stock"]
    assert token.created_by == "owner-tokens"
    assert Api(secret).get("/products").status_code == 200
    entry = AuditLog.objects.get(action="api_token.create")
    assert (entry.actor, entry.object_id, entry.ip) == ("owner-tokens", "erp", "10.1.1.1")
    listing = client.get(admin_url(PAGE)).content.decode()
    assert secret not in listing and token.prefix in listing and "read, stock" in listing


def test_the_list_shows_scopes_and_last_use():
    # given
    client = signed_in("owner", "owner-list")
    secret = secret_in(client.post(admin_url(PAGE), {"name": "erp", "scopes": ["read"]}).content.decode())
    before = client.get(admin_url(PAGE)).content.decode()
    # when
    Api(secret).get("/products")
    after = client.get(admin_url(PAGE)).content.decode()
    # then
    used = ApiToken.objects.get(name="erp").last_used_at
    assert used is not None
    with translation.override("zh-hans"):
        never = translation.gettext("never")
    assert never in before and f"{timezone.localtime(used):%Y-%m-%d %H:%M}" in after


def test_revoking_stops_the_token_at_once_and_is_audited():
    # given
    client = signed_in("owner", "owner-revoke")
    secret = secret_in(client.post(admin_url(PAGE), {"name": "erp", "scopes": ["read"]}).content.decode())
    # when
    response = client.post(admin_url(f"{PAGE}revoke/"), {"name": "erp"})
    # then
    assert response.status_code == 302
    assert_problem(Api(secret).get("/products"), 401, "unauthorized")
    assert AuditLog.objects.get(action="api_token.revoke").actor == "owner-revoke"
    page = client.get(admin_url(PAGE)).content.decode()
    assert 'id="tokens-revoked"' in page and 'id="tokens-active"' not in page
    again = client.post(admin_url(f"{PAGE}revoke/"), {"name": "erp"}, follow=True)
    assert "active token named &#x27;erp&#x27;" in again.content.decode()


def test_bad_input_is_shown_on_the_form_and_makes_nothing():
    # given
    client = signed_in("owner", "owner-bad")
    # when
    no_scope = client.post(admin_url(PAGE), {"name": "erp"})
    bad_name = client.post(admin_url(PAGE), {"name": "no spaces", "scopes": ["read"]})
    client.post(admin_url(PAGE), {"name": "erp", "scopes": ["read"]})
    taken = client.post(admin_url(PAGE), {"name": "erp", "scopes": ["read"]})
    # then
    assert no_scope.status_code == bad_name.status_code == taken.status_code == 400
    assert "give at least one" in no_scope.content.decode()
    assert "1-64 letters" in bad_name.content.decode() and 'value="no spaces"' in bad_name.content.decode()
    assert "exists already" in taken.content.decode()
    assert ApiToken.objects.count() == 1 and 'class="bo-token-secret"' not in taken.content.decode()
