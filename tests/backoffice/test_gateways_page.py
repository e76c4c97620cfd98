"""The gateways page: owners only; secrets are write-only (never in any HTML, an empty input
keeps the stored one); enable/disable and settings go through gateway_configure (audited);
the notify URL and the offline check are shown."""
from __future__ import annotations

import pytest

from kami.audit.models import AuditLog
from kami.payments.models import GatewayAccount
from kami.payments.registry import secrets_decrypt
from kami.payments.services import gateway_configure
from tests.backoffice.staffing import admin_url, signed_in

pytestmark = pytest.mark.django_db

EPAY_KEY = "KNOWN-epay-merchant-key-7f3a9c"
ALIPAY_BAD_KEY = "not-a-pem-SECRET-alipay-5d1e"


def epay(enable: bool = True, **values) -> GatewayAccount:
    values = {"pid": "1001", "url": "https://pay.example/", "key": EPAY_KEY, **values}
    return gateway_configure(name="epay", values=values, enable=enable, actor="test")


def stored_secrets(name: str) -> dict:
    return secrets_decrypt(GatewayAccount.objects.get(name=name))


@pytest.mark.parametrize("role,expected", [("owner", 200), ("operator", 403), ("support", 403)])
def test_the_page_per_role(role, expected):
    epay()
    client = signed_in(role, f"{role}-gw")
    assert client.get(admin_url("gateways/")).status_code == expected
    response = client.post(admin_url("gateways/epay/"), {"setting-pid": "2002", "enabled": "on"})
    assert response.status_code == (302 if role == "owner" else 403)
    assert GatewayAccount.objects.get(name="epay").config["pid"] == ("2002" if role == "owner" else "1001")


def test_secrets_never_appear_in_the_page():
    epay()
    gateway_configure(name="alipay", values={"app_id": "2021", "app_private_key": ALIPAY_BAD_KEY,
                                             "alipay_public_key": ALIPAY_BAD_KEY}, actor="test")
    client = signed_in("owner", "owner-secrets")
    html = client.get(admin_url("gateways/")).content.decode()
    assert EPAY_KEY not in html and ALIPAY_BAD_KEY not in html
    assert "1001" in html and "https://pay.example/" in html  # non-secret settings are shown
    assert 'name="secret-key" value=""' in html  # the secret input is always empty
    # after a save, and on the error path, the pages stay free of them too
    for data in ({"setting-pid": "1002", "enabled": "on"}, {"setting-pid": "", "enabled": "on"}):
        page = client.post(admin_url("gateways/epay/"), data, follow=True)
        assert EPAY_KEY not in page.content.decode()
    audit = " ".join(str(e.detail) for e in AuditLog.objects.filter(action="gateway.configure"))
    assert EPAY_KEY not in audit


def test_an_empty_secret_keeps_the_stored_one_and_a_typed_one_replaces_it():
    epay()
    client = signed_in("owner", "owner-keep")
    client.post(admin_url("gateways/epay/"), {"setting-pid": "1001", "setting-url": "https://pay.example/",
                                              "secret-key": "", "enabled": "on"})
    assert stored_secrets("epay")["key"] == EPAY_KEY
    client.post(admin_url("gateways/epay/"), {"secret-key": "  new-key-2  ", "enabled": "on"})
    assert stored_secrets("epay")["key"] == "new-key-2"
    entry = AuditLog.objects.filter(action="gateway.configure", actor="owner-keep").last()
    assert entry.detail["changed"] == ["key"]


def test_enable_and_disable_are_audited_and_shown():
    epay(enable=False)
    client = signed_in("owner", "owner-switch")
    page = client.post(admin_url("gateways/epay/"), {"setting-pid": "1001", "enabled": "on"}, follow=True)
    assert GatewayAccount.objects.get(name="epay").enabled
    assert 'class="bo-state-on"' in page.content.decode().split('id="gateway-epay"')[1].split("</h2>")[0]
    client.post(admin_url("gateways/epay/"), {"setting-pid": "1001"})
    assert not GatewayAccount.objects.get(name="epay").enabled
    entries = AuditLog.objects.filter(action="gateway.configure", actor="owner-switch").order_by("id")
    assert [e.detail["enabled"] for e in entries] == [True, False]


def test_an_incomplete_gateway_is_not_enabled_and_says_why():
    client = signed_in("owner", "owner-incomplete")
    page = client.post(admin_url("gateways/epay/"), {"setting-pid": "1001", "enabled": "on"}, follow=True)
    assert "cannot enable, missing url, key" in page.content.decode()
    assert not GatewayAccount.objects.filter(name="epay", enabled=True).exists()


def test_notify_url_and_offline_check(settings):
    settings.KAMI_BASE_URL = "https://shop.example"
    epay()
    gateway_configure(name="alipay", values={"app_id": "2021", "app_private_key": ALIPAY_BAD_KEY,
                                             "alipay_public_key": ALIPAY_BAD_KEY}, actor="test")
    html = signed_in("owner", "owner-check").get(admin_url("gateways/")).content.decode()
    epay_part = html.split('id="gateway-epay"')[1].split("</section>")[0]
    alipay_part = html.split('id="gateway-alipay"')[1].split("</section>")[0]
    stripe_part = html.split('id="gateway-stripe"')[1].split("</section>")[0]
    assert "https://shop.example/pay/epay/notify" in epay_part
    assert 'class="bo-check-ok"' in epay_part
    assert 'class="bo-check-problem"' in alipay_part and "app_private_key" in alipay_part
    assert "bo-check" in stripe_part and "bo-check-problem" not in stripe_part  # not configured: nothing checked
    assert stripe_part.count("bo-secret-unset") == 2


def test_unknown_gateway_and_get_on_save():
    client = signed_in("owner", "owner-unknown")
    page = client.post(admin_url("gateways/nosuch/"), {"enabled": "on"}, follow=True)
    assert "unknown gateway" in page.content.decode().lower()
    assert client.get(admin_url("gateways/epay/")).status_code == 405
