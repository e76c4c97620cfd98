"""`kami gateway set` and `kami gateway list`: secrets go in and never come out."""
from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from kami.audit.models import AuditLog
from kami.payments.models import GatewayAccount
from kami.payments.registry import gateway_get, secrets_decrypt

pytestmark = pytest.mark.django_db

KEY = "Zx9-very-secret-epay-key-0042"


def kami(*args: str) -> tuple[str, str]:
    out, err = StringIO(), StringIO()
    call_command("gateway", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def kami_fails(*args: str) -> CommandError:
    with pytest.raises(CommandError) as caught:
        kami(*args)
    assert caught.value.returncode == 2
    return caught.value


def test_set_stores_settings_encrypts_the_key_and_enables():
    # when
    out, _ = kami("set", "epay", "pid=1001", f"key={KEY}", "url=https://pay.example", "--enable")
    # then: the changes are named, the key is not echoed
    assert "epay: pid = '1001'" in out
    assert "epay: url = 'https://pay.example/'" in out
    assert "epay: key = (secret, stored encrypted)" in out
    assert "epay: enabled" in out
    assert "http://testserver/pay/epay/notify" in out
    assert KEY not in out
    account = GatewayAccount.objects.get(name="epay")
    assert account.config == {"pid": "1001", "url": "https://pay.example/"}
    assert KEY.encode() not in bytes(account.secrets_ciphertext)
    assert secrets_decrypt(account) == {"key": KEY}
    assert gateway_get("epay").secrets["key"] == KEY
    assert AuditLog.objects.get(action="gateway.configure").detail == {"changed": ["key", "pid", "url"], "enabled": True}


def test_set_changes_one_setting_and_keeps_the_rest():
    kami("set", "epay", "pid=1001", f"key={KEY}", "url=https://pay.example/", "--enable")
    out, _ = kami("set", "epay", "type=wxpay")
    assert "epay: type = 'wxpay'" in out and "epay: enabled" in out
    assert gateway_get("epay").config == {"pid": "1001", "url": "https://pay.example/", "type": "wxpay"}
    assert gateway_get("epay").secrets == {"key": KEY}


def test_a_value_may_contain_equals_signs():
    kami("set", "epay", "pid=1001", "key=a=b==", "url=https://pay.example/")
    assert secrets_decrypt(GatewayAccount.objects.get(name="epay")) == {"key": "a=b=="}


def test_disable():
    kami("set", "epay", "pid=1001", f"key={KEY}", "url=https://pay.example/", "--enable")
    out, _ = kami("set", "epay", "--disable")
    assert "epay: disabled" in out
    assert not GatewayAccount.objects.get(name="epay").enabled


def test_list_shows_settings_and_which_secrets_are_set_never_their_values():
    # given
    kami("set", "epay", "pid=1001", f"key={KEY}", "url=https://pay.example/", "--enable")
    # when
    out, _ = kami("list")
    # then
    epay_line = next(line for line in out.splitlines() if "│ epay" in line)
    sandbox_line = next(line for line in out.splitlines() if "│ sandbox" in line)
    assert "yes" in epay_line and "pid=1001" in epay_line and "key: set" in epay_line
    assert "http://testserver/pay/epay/notify" in epay_line
    assert "no" in sandbox_line and "secret: missing" in sandbox_line
    assert "http://testserver/pay/sandbox/notify" in sandbox_line
    assert "url=https://pay.example/" in out
    assert KEY not in out


def test_list_names_what_an_unconfigured_gateway_is_missing():
    out, _ = kami("list")
    assert "missing: pid, url" in out
    assert "key: missing" in out


@pytest.mark.parametrize("args, message", [
    (["set", "epay", "pid"], "KEY=VALUE"),
    (["set", "epay", "=1001"], "KEY=VALUE"),
    (["set", "epay", "PID=1001"], "'PID'"),
    (["set", "epay", "pid=1", "pid=2"], "pid: given twice"),
    (["set", "epay", "pdi=1001"], "unknown setting 'pdi'; epay takes pid, url, type, currency, refund, key"),
    (["set", "paypall", "x=1"], "unknown gateway 'paypall'; known: "),
    (["set", "epay", "pid=1001", "--enable"], "cannot enable, missing url, key (kami gateway set epay url=…)"),
    (["set", "epay", "url=pay.example"], "url 'pay.example' should be the Epay site's address"),
    (["set", "epay"], "nothing to change"),
])
def test_bad_input_exits_2_naming_the_problem_and_the_fix(args, message):
    error = kami_fails(*args)
    assert message in str(error)
    assert not GatewayAccount.objects.filter(enabled=True).exists()


def test_a_secret_typed_as_a_bare_word_is_not_echoed():
    error = kami_fails("set", "epay", "pid=1001", "Sup3r/Secret+Key")
    assert "Sup3r" not in str(error)
    assert "setting #2" in str(error)


def test_clearing_the_key_of_an_enabled_gateway_is_refused():
    kami("set", "epay", "pid=1001", f"key={KEY}", "url=https://pay.example/", "--enable")
    error = kami_fails("set", "epay", "key=")
    assert "is enabled and needs key" in str(error)
    assert gateway_get("epay").secrets == {"key": KEY}


def test_a_plain_http_site_is_refused_and_loopback_only_in_development(settings):
    # the merchant key travels to the Epay site in a query string: never in clear
    error = kami_fails("set", "epay", "pid=1001", f"key={KEY}", "url=http://pay.example/", "--enable")
    assert "must start with https://" in str(error) and "url=https://" in str(error)
    kami("set", "epay", "pid=1001", f"key={KEY}", "url=http://127.0.0.1:8080/", "--enable")  # a local site
    settings.PRODUCTION = True
    assert "in production" in str(kami_fails("set", "epay", "url=http://127.0.0.1:8080/"))
    for gateway, token in (("epusdt", "api_auth_token"), ("tokenpay", "api_token")):
        assert "must start with https://" in str(kami_fails("set", gateway, "url=http://usdt.example", f"{token}=t"))


def test_sandbox_enables_with_a_generated_secret_in_development():
    out, _ = kami("set", "sandbox", "--enable")
    assert "sandbox: enabled" in out
    assert len(gateway_get("sandbox").secrets["secret"]) == 64
    assert gateway_get("sandbox").secrets["secret"] not in kami("list")[0]


def test_sandbox_cannot_be_enabled_in_production(settings):
    settings.PRODUCTION = True
    error = kami_fails("set", "sandbox", "--enable")
    assert "cannot be enabled in production" in str(error)
    assert not GatewayAccount.objects.filter(name="sandbox", enabled=True).exists()


def test_a_sandbox_left_enabled_is_off_in_production(client, settings, make_product):
    # given: enabled on a trial install, then the shop goes to production with the same database
    kami("set", "sandbox", "--enable")
    product = make_product()
    settings.PRODUCTION = True
    # when
    checkout = client.post("/api/v1/orders", {"product": product.slug, "quantity": 1, "email": "b@example.com",
                                              "gateway": "sandbox"}, content_type="application/json")
    notify = client.post("/pay/sandbox/notify", data=b"{}", content_type="application/json")
    free_payment = client.post("/pay/sandbox/checkout/1")
    # then
    assert checkout.status_code == 400
    assert notify.status_code == 404
    assert free_payment.status_code == 404
    assert "no (sandbox off here)" in kami("list")[0]


def test_gateway_check_names_what_is_missing_and_prints_the_urls(capsys):
    with pytest.raises(CommandError) as missing:
        call_command("gateway", "check", "epay")
    assert missing.value.returncode == 2
    err = capsys.readouterr()
    assert "pid is missing" in err.err and "secret key is missing" in err.err
    call_command("gateway", "set", "epay", "pid=1001", "key=k3y", "url=https://pay.example/")
    call_command("gateway", "check", "epay")
    out = capsys.readouterr().out
    assert "/pay/epay/notify" in out and "settings look right (not enabled yet: --enable)" in out


def test_a_value_can_be_read_from_a_file(tmp_path):
    (tmp_path / "key.txt").write_text("from-a-file\n")
    call_command("gateway", "set", "epay", "pid=1001", f"key=@{tmp_path / 'key.txt'}", "url=https://pay.example/")
    assert gateway_get("epay", require_enabled=False).secrets["key"] == "from-a-file"
    with pytest.raises(CommandError) as unreadable:
        call_command("gateway", "set", "epay", f"key=@{tmp_path / 'nope.pem'}")
    assert unreadable.value.returncode == 2 and "cannot read" in str(unreadable.value)
