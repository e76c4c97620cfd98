"""Custom fields: the merchant's definitions are checked when set, the buyer's answers on the
server at checkout (API and product page), with translated errors that show the label as the
merchant wrote it."""
from __future__ import annotations

import pytest
from django.utils import translation

from kami.audit.models import AuditLog
from kami.catalog.custom_fields import custom_fields_clean, custom_values_clean, product_custom_fields_set
from kami.core.errors import BadInput
from kami.orders.models import Order
from tests.sandbox_play import enable_sandbox

pytestmark = pytest.mark.django_db

FIELDS = [{"name": "game_id", "label": "Game ID 游戏账号", "required": True, "max_length": 12},
          {"name": "server", "label": "Server", "required": False}]


def test_definitions_get_defaults_and_are_stored_with_an_audit_row(make_product):
    # given
    product = make_product(kind="manual")
    # when
    product_custom_fields_set(product=product, fields=FIELDS, actor="owner", ip="10.0.0.1")
    # then
    product.refresh_from_db()
    assert product.custom_fields[1] == {"name": "server", "label": "Server", "required": False, "max_length": 100}
    assert AuditLog.objects.get(action="product_custom_fields").detail["fields"] == ["game_id", "server"]


@pytest.mark.parametrize("fields,message", [
    ("game_id", "expected a list"),
    ([{"name": "Game ID", "label": "x"}], "name 'Game ID' must be"),
    ([{"name": "a", "label": "x"}, {"name": "a", "label": "y"}], "used twice"),
    ([{"name": "a", "label": "  "}], "label must be"),
    ([{"name": "a", "label": "x", "required": "yes"}], "true or false"),
    ([{"name": "a", "label": "x", "max_length": 0}], "max_length must be"),
    ([{"name": f"f{i}", "label": "x"} for i in range(11)], "at most 10"),
])
def test_bad_definitions_are_refused_naming_the_entry(fields, message):
    with pytest.raises(BadInput, match=message):
        custom_fields_clean(fields)


def test_answers_are_checked_with_the_merchants_labels(make_product):
    # given
    product = make_product(kind="manual", custom_fields=FIELDS)
    # when
    with translation.override("zh-hans"):
        _, missing = custom_values_clean(product=product, values={})
        _, long = custom_values_clean(product=product, values={"game_id": "1234567890123"})
        _, two_lines = custom_values_clean(product=product, values={"game_id": "12\n34"})
    with translation.override("en"):
        _, english = custom_values_clean(product=product, values={})
    clean, errors = custom_values_clean(product=product, values={"game_id": "  42 ", "server": ""})
    _, unknown = custom_values_clean(product=product, values={"game_id": "42", "bogus": "x"})
    # then
    assert missing == {"custom_values.game_id": "请填写Game ID 游戏账号。"}
    assert long == {"custom_values.game_id": "Game ID 游戏账号：最多 12 个字符。"}
    assert two_lines == {"custom_values.game_id": "Game ID 游戏账号 必须是单行文字。"}
    assert english == {"custom_values.game_id": "Game ID 游戏账号 is required."}
    assert (clean, errors) == ({"game_id": "42"}, {})
    assert "unknown field(s) bogus" in unknown["custom_values"]


def test_the_api_keeps_the_answers_on_the_order(client, make_product):
    # given
    enable_sandbox()
    make_product("topup", kind="manual", custom_fields=FIELDS)
    # when
    bad = client.post("/api/v1/orders", {"product": "topup", "email": "b@example.com", "gateway": "sandbox"},
                      content_type="application/json", HTTP_ACCEPT_LANGUAGE="en")
    good = client.post("/api/v1/orders", {"product": "topup", "email": "b@example.com", "gateway": "sandbox",
                                          "custom_values": {"game_id": "42"}}, content_type="application/json")
    # then
    assert bad.status_code == 400 and bad.json()["fields"] == {"custom_values.game_id": "Game ID 游戏账号 is required."}
    assert good.status_code == 201, good.content
    assert Order.objects.get().custom_values == {"game_id": "42"}


def test_the_product_page_asks_the_fields_and_shows_their_errors(client, make_product):
    # given
    enable_sandbox()
    make_product("topup", kind="manual", custom_fields=FIELDS)
    # when
    page = client.get("/p/topup", HTTP_ACCEPT_LANGUAGE="en").content.decode()
    refused = client.post("/buy/topup", {"quantity": "1", "email": "b@example.com", "gateway": "sandbox",
                                         "custom_game_id": "1234567890123"}, HTTP_ACCEPT_LANGUAGE="en")
    bought = client.post("/buy/topup", {"quantity": "1", "email": "b@example.com", "gateway": "sandbox",
                                        "custom_game_id": "42", "custom_server": "Asia"})
    # then
    assert 'name="custom_game_id"' in page and 'maxlength="12" required' in page and "Game ID 游戏账号" in page
    assert 'name="custom_server"' in page and "Server (optional)" in page
    assert refused.status_code == 400 and "Game ID 游戏账号: at most 12 characters." in refused.content.decode()
    assert 'value="1234567890123"' in refused.content.decode()
    assert bought.status_code == 302
    assert Order.objects.get().custom_values == {"game_id": "42", "server": "Asia"}
