"""`kami gateway check` catches the mistakes merchants make with RSA gateways, offline."""
from __future__ import annotations

import pytest
from django.core.management import CommandError, call_command

from tests.payments.alipay_play import APP_KEY, enable_alipay, public_base64
from tests.payments.wechat_play import enable_wechatpay

pytestmark = [pytest.mark.django_db, pytest.mark.sqlite_only]  # offline key checks: the same on every engine


def check(name: str, capsys) -> tuple[int, str]:
    try:
        call_command("gateway", "check", name)
        code = 0
    except CommandError as exc:
        code = exc.returncode
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def test_alipay_with_good_keys_passes(capsys):
    enable_alipay()
    code, text = check("alipay", capsys)
    assert code == 0 and "settings look right" in text and "/pay/alipay/notify" in text


def test_alipay_with_the_apps_own_public_key_is_caught(capsys):
    enable_alipay(alipay_public_key=public_base64(APP_KEY))
    code, text = check("alipay", capsys)
    assert code == 2 and "app's own public key" in text


def test_alipay_with_a_key_that_does_not_load_is_caught(capsys):
    enable_alipay()
    call_command("gateway", "set", "alipay", "app_private_key=-----BEGIN PRIVATE KEY-----garbage-----END PRIVATE KEY-----")
    code, text = check("alipay", capsys)
    assert code == 2 and "app_private_key" in text


def test_wechatpay_checks_keys_and_apiv3_key_length(capsys):
    enable_wechatpay()
    assert check("wechatpay", capsys)[0] == 0
    call_command("gateway", "set", "wechatpay", "apiv3_key=short")
    code, text = check("wechatpay", capsys)
    assert code == 2 and "32-character" in text


@pytest.mark.parametrize("name, token", [("epay", "key"), ("epusdt", "api_auth_token"), ("tokenpay", "api_token")])
def test_a_loopback_http_url_is_caught_once_production_is_on(capsys, settings, name, token):
    # given a local instance, set up in development
    call_command("gateway", "set", name, "url=http://127.0.0.1:8080/", f"{token}=t", *(["pid=1001"] if name == "epay" else []))
    assert check(name, capsys)[0] == 0
    # when the shop goes to production on the same data
    settings.PRODUCTION = True
    code, text = check(name, capsys)
    # then
    assert code != 0 and "must start with https://" in text
