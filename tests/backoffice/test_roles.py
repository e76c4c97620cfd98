"""What each role may open and do. The matrix is the contract: owner everything; operator
catalog/orders/after-sales/import but no key reveal or export, no gateways, no staff; support
reads orders and resends deliveries."""
from __future__ import annotations

import pytest
from django.test import Client

from kami.backoffice.perms import can
from kami.staff.roles import Role, role_of, roles_sync, staff_set_role
from tests.backoffice.staffing import admin_url, make_staff, signed_in

pytestmark = [pytest.mark.django_db, pytest.mark.sqlite_only]  # who may open what: the same on every engine

CAPABILITIES = {
    # capability:        owner, operator, support
    "view_dashboard":    (True, True, False),
    "reveal_keys":       (True, False, False),
    "export_keys":       (True, False, False),
    "import_keys":       (True, True, False),
    "generate_keys":     (True, True, False),
    "void_keys":         (True, True, False),
    "refund_orders":     (True, True, False),
    "fulfil_orders":     (True, True, False),
    "replace_keys":      (True, True, False),
    "flag_orders":       (True, True, False),
    "resend_deliveries": (True, True, True),
    "handle_deliveries": (True, True, False),
    "manage_gateways":   (True, False, False),
    "manage_shop":       (True, False, False),
    "manage_staff":      (True, False, False),
    "view_audit":        (True, False, False),
}

PAGES = {
    # page:                          owner, operator, support
    "catalog/product/":             (200, 200, 403),
    "catalog/product/add/":         (200, 200, 403),
    "catalog/category/":            (200, 200, 403),
    "audit/auditlog/":              (200, 403, 403),
    "auth/user/":                   (200, 403, 403),
}


@pytest.mark.parametrize("capability", sorted(CAPABILITIES))
def test_capabilities_per_role(capability):
    users = [make_staff(role.value, f"{role.value}-{capability}") for role in Role]
    assert [can(u, capability) for u in users] == list(CAPABILITIES[capability])


@pytest.mark.parametrize("page", sorted(PAGES))
def test_model_pages_per_role(page):
    for role, expected in zip(Role, PAGES[page]):
        client = signed_in(role.value, f"{role.value}-page")
        assert client.get(admin_url(page)).status_code == expected, (role, page)


def test_audit_log_is_read_only_even_for_owners():
    from kami.audit.services import audit_record

    entry = audit_record(actor="someone", action="key_reveal", obj_type="key", obj_id=1)
    client = signed_in("owner")
    assert client.get(admin_url(f"audit/auditlog/{entry.pk}/change/")).status_code == 200
    assert client.post(admin_url(f"audit/auditlog/{entry.pk}/delete/"), {"post": "yes"}).status_code == 403
    assert client.get(admin_url("audit/auditlog/add/")).status_code == 403


def test_role_change_takes_effect_and_an_unroled_account_is_shut_out():
    user = make_staff("support", "sam")
    assert role_of(user) is Role.SUPPORT and not can(user, "refund_orders")
    user = staff_set_role(username="sam", role="operator", actor="test")
    user = type(user).objects.get(pk=user.pk)  # permission caches are per instance
    assert role_of(user) is Role.OPERATOR and can(user, "refund_orders")
    user.groups.clear()
    user = type(user).objects.get(pk=user.pk)
    assert role_of(user) is None and not can(user, "resend_deliveries")


def test_roles_sync_is_idempotent():
    roles_sync()
    roles_sync()
    user = make_staff("operator", "olga")
    assert can(user, "import_keys") and not can(user, "reveal_keys")


def test_anonymous_and_buyers_get_the_login_page():
    assert Client().get(admin_url("catalog/product/")).status_code == 302
