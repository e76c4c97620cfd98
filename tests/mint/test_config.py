"""Setting a dynamic product's mint URL and secret (`kami product set`), the secret sealed with the
data key and moved by the data-key rotation, and the shipped retry schedule."""
from __future__ import annotations

import re
import time

import pytest
from standardwebhooks import Webhook

from kami import settings as shipped
from kami.audit.models import AuditLog
from kami.catalog.models import Product
from kami.core.crypto import keyring
from kami.delivery import backoff
from kami.fulfilment.mint.config import mint_secret_open, product_mint_set
from kami.webhooks.signing import signature_header
from tests.cli.test_product_keys_stock import kami, kami_fails
from tests.ops.test_rotate_data_key import data_dir, rotate  # noqa: F401 (data_dir: the fixture)

pytestmark = pytest.mark.django_db(transaction=True)
SECRET = re.compile(r"whsec_[A-Za-z0-9+/=]{44}")


@pytest.mark.sqlite_only
def test_the_shipped_mint_schedule_alerts_a_person_within_the_hour(settings):
    settings.KAMI_DELIVERY_BACKOFF_BY_CHANNEL = shipped.KAMI_DELIVERY_BACKOFF_BY_CHANNEL
    plan = backoff.schedule("mint")
    assert backoff.max_attempts(plan) == 7 and sum(plan) <= 3600
    assert backoff.schedule("email") == [int(s) for s in settings.KAMI_DELIVERY_BACKOFF]


@pytest.mark.sqlite_only
def test_cli_sets_the_url_and_shows_the_secret_once(make_product):
    # given a dynamic product added from the command line
    out, _ = kami("product", "add", "game-card", "--name", "Game card", "--price", "10", "--kind", "dynamic")
    assert "kami product set game-card mint_url=" in out
    # when its mint URL is set, twice
    first, _ = kami("product", "set", "game-card", "mint_url=https://erp.example.com/kami/mint")
    again, _ = kami("product", "set", "game-card", "mint_url=https://erp.example.com/v2/mint")
    # then the secret was made and shown the first time only, and kept sealed, not in clear
    [secret] = SECRET.findall(first)
    assert not SECRET.findall(again) and "mint URL https://erp.example.com/v2/mint" in again
    product = Product.objects.get(slug="game-card")
    assert mint_secret_open(product) == secret and secret.encode() not in bytes(product.mint_secret_ciphertext)
    # when a new secret is asked for: another one, shown once
    renewed, _ = kami("product", "set", "game-card", "mint_secret=new")
    assert SECRET.findall(renewed) != [secret] and mint_secret_open(Product.objects.get(pk=product.pk)) != secret
    audited = AuditLog.objects.filter(action__startswith="product.mint").order_by("id")
    assert list(audited.values_list("action", flat=True)) == [
        "product.mint_set", "product.mint_set", "product.mint_secret_new"]


@pytest.mark.sqlite_only
@pytest.mark.parametrize("args, message", [
    (["steam", "mint_url=https://erp.example.com/mint"], "steam is a unique product; only a dynamic product"),
    (["game", "mint_url=ftp://erp.example.com/mint"], "is not an http(s) URL"),
    (["game", "mint_secret=please"], "write mint_url=https://… (mint_url= clears it) or mint_secret=new"),
    (["game", "mint_url=https://a.example", "mint_secret=new"], "one at a time"),
])
def test_cli_refuses_bad_mint_settings_naming_the_fix(make_product, args, message):
    make_product("steam")
    make_product("game", kind="dynamic")
    assert message in str(kami_fails("product", "set", *args))


def test_the_data_key_rotation_moves_the_mint_secret(data_dir, make_product):  # noqa: F811
    # given a dynamic product's secret, sealed under the old data key
    product = make_product("game", kind="dynamic")
    secret = product_mint_set(product=product, url="https://erp.example.com/mint", actor="test").secret
    old = Product.objects.get(pk=product.pk).mint_secret_key_id
    # when
    out = rotate()
    # then it is sealed under the new key, and still signs what a merchant verifies
    product = Product.objects.get(pk=product.pk)
    assert product.mint_secret_key_id == keyring().primary_id != old and "1 secret(s)" in out
    now = int(time.time())
    header = signature_header(secrets_=[mint_secret_open(product)], msg_id="mint_1", timestamp=now, body=b"{}")
    assert Webhook(secret).verify(b"{}", {"webhook-id": "mint_1", "webhook-timestamp": str(now),
                                          "webhook-signature": header}) == {}
