"""The key pages of the back office, per role: the list (never a key's text), reveal (owner
only, audited), void and restore, generate, export (owner only, audited)."""
from __future__ import annotations

import pytest

from kami.audit.models import AuditLog
from kami.stock.models import Key
from kami.stock.vault import key_fingerprint
from tests.backoffice.staffing import admin_url
from tests.backoffice.staffing import signed_in as signed_in_as
from tests.factories import add_keys
from tests.stock.helpers import stored_keys

pytestmark = pytest.mark.django_db


def signed_in(role: str, username: str | None = None):
    """A signed-in client that reads the pages in English (messages are checked by text)."""
    client = signed_in_as(role, username)
    client.defaults["HTTP_ACCEPT_LANGUAGE"] = "en"
    return client

ROLES = ("owner", "operator", "support")
SECRET = "GIFT-SECRET-0001-ABCD"


@pytest.fixture
def product(make_product):
    product = make_product("gift", name="Gift card")
    add_keys(product, [SECRET, "GIFT-SECRET-0002-EFGH", "GIFT-SECRET-0003-IJKL"])
    return product


def _key(text: str = SECRET) -> Key:
    return Key.objects.get(fingerprint=key_fingerprint(text))


def _clients() -> dict[str, object]:
    return {role: signed_in(role, f"{role}-keys") for role in ROLES}


@pytest.mark.parametrize("page,expected", [
    ("stock/key/", (200, 200, 403)),
    ("stock/importjob/", (200, 200, 403)),
    ("keys/import/", (200, 200, 403)),
    ("keys/generate/", (200, 200, 403)),
    ("keys/export/", (200, 403, 403)),
    ("keys/{key}/reveal/", (200, 403, 403)),
    ("keys/{key}/void/", (200, 200, 403)),
    ("keys/{key}/restore/", (200, 200, 403)),
])
def test_key_pages_per_role(product, page, expected):
    # given one account of each role
    clients = _clients()
    url = admin_url(page.format(key=_key().pk))
    # when each opens the page, then only the roles allowed get it
    assert [clients[role].get(url).status_code for role in ROLES] == list(expected)


def test_a_key_has_no_change_add_or_delete_page_even_for_the_owner(product):
    client = signed_in("owner")
    key = _key()
    for page in (f"stock/key/{key.pk}/change/", f"stock/key/{key.pk}/", "stock/key/add/",
                 f"stock/key/{key.pk}/delete/", f"stock/key/{key.pk}/history/"):
        assert client.get(admin_url(page)).status_code == 404, page


@pytest.mark.parametrize("role", ["owner", "operator"])
def test_the_key_list_never_contains_a_key_text(product, role):
    # given the list filtered by product, and a search by fingerprint prefix
    client = signed_in(role, f"{role}-list")
    key = _key()
    listing = client.get(admin_url(f"stock/key/?product__id__exact={product.pk}"))
    searched = client.get(admin_url(f"stock/key/?q={key.fingerprint[:8]}"))
    # then the keys are listed by id and fingerprint prefix, and no text of any key is there
    for response in (listing, searched):
        html = response.content.decode()
        assert response.status_code == 200
        assert key.fingerprint[:8] in html and f">{key.pk}<" in html
        assert key.fingerprint[:12] not in html  # the prefix only, 8 characters
        assert "GIFT-SECRET" not in html
    assert "GIFT-SECRET-0002" not in listing.content.decode()
    assert listing.content.decode().count('class="kami-fingerprint"') == 3


def test_the_list_shows_reveal_buttons_only_to_owners(product):
    owner, operator = signed_in("owner"), signed_in("operator")
    url = admin_url("stock/key/")
    assert f'form="key-reveal-{_key().pk}"' in owner.get(url).content.decode()
    assert "key-reveal-" not in operator.get(url).content.decode()


def test_reveal_shows_the_key_once_no_store_and_writes_the_audit_row(product):
    # given the owner signed in from 10.1.1.1
    client = signed_in("owner", "olga")
    key = _key()
    # when the owner posts the reveal button
    response = client.post(admin_url(f"keys/{key.pk}/reveal/"))
    # then the page holds the key, is not cached, and the audit log names the owner and the IP
    assert response.status_code == 200
    assert SECRET in response.content.decode()
    assert "no-store" in response["Cache-Control"]
    entry = AuditLog.objects.get(action="keys.reveal", object_id=str(key.pk))
    assert (entry.actor, entry.ip, entry.object_type) == ("olga", "10.1.1.1", "key")
    assert SECRET not in str(entry.detail)


def test_reveal_by_get_shows_no_key_and_writes_no_audit(product):
    response = signed_in("owner").get(admin_url(f"keys/{_key().pk}/reveal/"))
    assert response.status_code == 200 and SECRET not in response.content.decode()
    assert not AuditLog.objects.filter(action="keys.reveal").exists()


@pytest.mark.parametrize("role", ["operator", "support"])
def test_reveal_is_refused_to_other_roles_with_no_audit_row(product, role):
    response = signed_in(role, f"{role}-reveal").post(admin_url(f"keys/{_key().pk}/reveal/"))
    assert response.status_code == 403 and SECRET not in response.content.decode()
    assert not AuditLog.objects.filter(action="keys.reveal").exists()


@pytest.mark.parametrize("role,allowed", [("owner", True), ("operator", True), ("support", False)])
def test_void_and_restore_per_role(product, role, allowed):
    client = signed_in(role, f"{role}-void")
    key = _key()
    # when the key is voided with a reason
    voided = client.post(admin_url(f"keys/{key.pk}/void/"), {"reason": "buyer says it was used"})
    key.refresh_from_db()
    if not allowed:
        assert voided.status_code == 403 and key.status == Key.Status.AVAILABLE
        assert client.post(admin_url(f"keys/{key.pk}/restore/")).status_code == 403
        return
    # then it is void, with the reason, on record
    assert voided.status_code == 302
    assert (key.status, key.void_reason) == (Key.Status.VOID, "buyer says it was used")
    assert AuditLog.objects.filter(action="keys.void", object_id=str(key.pk), actor=f"{role}-void").exists()
    # and restoring puts it back on sale, on record
    assert client.post(admin_url(f"keys/{key.pk}/restore/")).status_code == 302
    key.refresh_from_db()
    assert key.status == Key.Status.AVAILABLE
    assert AuditLog.objects.filter(action="keys.restore", object_id=str(key.pk)).exists()


def test_void_needs_a_reason_and_a_refused_restore_says_why(product):
    client = signed_in("owner")
    key = _key()
    response = client.post(admin_url(f"keys/{key.pk}/void/"), {"reason": ""})
    key.refresh_from_db()
    assert response.status_code == 200 and key.status == Key.Status.AVAILABLE
    # restoring a key that is not void is refused with the service's message
    response = client.post(admin_url(f"keys/{key.pk}/restore/"), follow=True)
    assert "only a void key can be restored" in response.content.decode()


@pytest.mark.parametrize("role,allowed", [("owner", True), ("operator", True), ("support", False)])
def test_generate_per_role(product, role, allowed):
    client = signed_in(role, f"{role}-gen")
    response = client.post(admin_url("keys/generate/"), {"product": product.pk, "count": 25,
                                                          "pattern": "KAMI-XXXX-XXXX-XXXX"})
    generated = [k for k in stored_keys(product) if k.startswith("KAMI-")]
    if allowed:
        assert response.status_code == 302 and len(generated) == 25
        assert AuditLog.objects.filter(action="keys.generate", actor=f"{role}-gen").exists()
    else:
        assert response.status_code == 403 and generated == []


def test_generate_refuses_a_weak_pattern_with_the_reason(product):
    response = signed_in("owner").post(admin_url("keys/generate/"), {"product": product.pk, "count": 5,
                                                                     "pattern": "KAMI-XX"})
    assert response.status_code == 200
    assert "bits of randomness" in response.content.decode()


@pytest.mark.parametrize("role", ["operator", "support"])
def test_export_is_refused_to_other_roles(product, role):
    response = signed_in(role, f"{role}-export").post(admin_url("keys/export/"), {
        "product": product.pk, "status": "available", "fmt": "txt"})
    assert response.status_code == 403
    assert not AuditLog.objects.filter(action="keys.export").exists()


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("fmt", ["txt", "csv"])
def test_export_streams_the_keys_and_is_audited(product, fmt):
    # given the owner and a void key
    client = signed_in("owner", "olga")
    Key.objects.filter(pk=_key("GIFT-SECRET-0003-IJKL").pk).update(status=Key.Status.VOID)
    # when the owner exports the available keys
    response = client.post(admin_url("keys/export/"), {"product": product.pk, "status": "available", "fmt": fmt})
    body = b"".join(response.streaming_content).decode()
    # then the download holds exactly those keys, and the export is on record with the IP
    assert response.status_code == 200 and response.streaming
    assert "attachment" in response["Content-Disposition"] and "no-store" in response["Cache-Control"]
    lines = body.splitlines()
    expected = [SECRET, "GIFT-SECRET-0002-EFGH"]
    if fmt == "csv":
        assert lines[0] == "key,status,order_no,sold_at"
        assert [line.split(",")[0] for line in lines[1:]] == expected
    else:
        assert lines == expected
    entry = AuditLog.objects.get(action="keys.export")
    assert (entry.actor, entry.ip, entry.detail["count"], entry.detail["format"]) == ("olga", "10.1.1.1", 2, fmt)


def test_key_actions_are_csrf_protected(product):
    client = signed_in("owner")
    client.handler.enforce_csrf_checks = True
    key = _key()
    assert client.post(admin_url(f"keys/{key.pk}/reveal/")).status_code == 403
    assert client.post(admin_url(f"keys/{key.pk}/void/"), {"reason": "x"}).status_code == 403
    assert not AuditLog.objects.filter(action__in=["keys.reveal", "keys.void"]).exists()


def test_the_list_finds_a_key_by_the_order_it_went_to(product):
    # given a key sold to an order
    from kami.orders.models import OrderKey
    from tests.stock.helpers import awaiting_order

    key = _key("GIFT-SECRET-0002-EFGH")
    order = awaiting_order(product, order_no="K00000042")
    OrderKey.objects.create(order=order, key=key, exclusive_key=key)
    # when the list is searched by the order number, then that key alone is listed, with its order
    html = signed_in("operator").get(admin_url("stock/key/?q=K00000042")).content.decode()
    assert html.count('class="kami-fingerprint"') == 1
    assert key.fingerprint[:8] in html and "K00000042" in html
