"""Products in the back office: the catalog's own rules on custom fields and tiers, price
changes audited, no deletion (orders and keys point at products)."""
from __future__ import annotations

import json
from decimal import Decimal

import pytest

from kami.audit.models import AuditLog
from kami.catalog.models import Product, TierPrice
from tests.backoffice.staffing import admin_url, signed_in

pytestmark = pytest.mark.django_db


def product_form(**overrides) -> dict:
    data = {
        "slug": "game-topup", "name": "Game top-up", "description": "", "price": "10.00", "currency": "CNY",
        "kind": "manual", "min_qty": 1, "max_qty": 5, "low_stock": 0, "instructions": "", "email_keys": "on",
        "custom_fields": json.dumps([{"name": "game_id", "label": "Game ID", "required": True, "max_length": 40}]),
        "active": "on", "sort_order": 0,
        "tiers-TOTAL_FORMS": 0, "tiers-INITIAL_FORMS": 0, "tiers-MIN_NUM_FORMS": 0, "tiers-MAX_NUM_FORMS": 1000,
    }
    data.update(overrides)
    return data


def tier_prefix(client) -> str:
    page = client.get(admin_url("catalog/product/add/")).content.decode()
    return "tierprice_set" if "tierprice_set-TOTAL_FORMS" in page else "tiers"


def with_prefix(data: dict, prefix: str) -> dict:
    return {k.replace("tiers-", f"{prefix}-"): v for k, v in data.items()}


def test_operator_adds_a_manual_product_with_custom_fields():
    client = signed_in("operator")
    prefix = tier_prefix(client)
    response = client.post(admin_url("catalog/product/add/"), with_prefix(product_form(), prefix))
    assert response.status_code == 302, response.content.decode()[:3000]
    product = Product.objects.get(slug="game-topup")
    assert product.kind == "manual"
    assert product.custom_fields == [{"name": "game_id", "label": "Game ID", "required": True, "max_length": 40}]
    assert AuditLog.objects.filter(action="product_create", object_id=str(product.pk)).exists()


def test_bad_custom_fields_are_refused_with_the_catalog_message():
    client = signed_in("operator")
    prefix = tier_prefix(client)
    bad = json.dumps([{"name": "Game ID!", "label": "x"}])
    response = client.post(admin_url("catalog/product/add/"), with_prefix(product_form(custom_fields=bad), prefix))
    assert response.status_code == 200
    assert "must be 1-32 of a-z" in response.content.decode()
    assert not Product.objects.filter(slug="game-topup").exists()


def test_price_change_is_audited_and_products_cannot_be_deleted(make_product):
    product = make_product("steam", price=Decimal("48.00"))
    client = signed_in("owner")
    prefix = tier_prefix(client)
    data = with_prefix(product_form(slug="steam", name="Steam", kind="unique", price="45.00", custom_fields="[]"), prefix)
    response = client.post(admin_url(f"catalog/product/{product.pk}/change/"), data)
    assert response.status_code == 302, response.content.decode()[:3000]
    entry = AuditLog.objects.get(action="product_change", object_id=str(product.pk))
    assert entry.detail["price"] == ["48.00", "45.00"] and entry.actor == "owner-user"
    assert client.post(admin_url(f"catalog/product/{product.pk}/delete/"), {"post": "yes"}).status_code == 403
    assert Product.objects.filter(pk=product.pk).exists()


def test_a_tier_below_two_is_refused(make_product):
    product = make_product("steam")
    client = signed_in("operator")
    prefix = tier_prefix(client)
    data = with_prefix(product_form(slug="steam", name="Steam", kind="unique", custom_fields="[]",
                                    **{"tiers-TOTAL_FORMS": 1, "tiers-0-min_quantity": 1, "tiers-0-unit_price": "9.00"}),
                       prefix)
    response = client.post(admin_url(f"catalog/product/{product.pk}/change/"), data)
    assert response.status_code == 200
    assert "Tiers start at 2" in response.content.decode() or "阶梯价从 2 件起" in response.content.decode()


def test_a_tier_above_the_max_quantity_is_refused_with_the_catalog_message(make_product):
    # given a product sold at most 5 at a time
    product = make_product("steam", max_qty=5)
    client = signed_in("operator")
    prefix = tier_prefix(client)
    data = with_prefix(product_form(slug="steam", name="Steam", kind="unique", custom_fields="[]",
                                    **{"tiers-TOTAL_FORMS": 1, "tiers-0-min_quantity": 6, "tiers-0-unit_price": "9.00"}),
                       prefix)
    # when a tier from 6 is added
    response = client.post(admin_url(f"catalog/product/{product.pk}/change/"), data)
    # then the catalog's rule refuses it on the page, and nothing is stored
    assert response.status_code == 200
    assert "is above the product&#x27;s max quantity 5" in response.content.decode()
    assert not TierPrice.objects.filter(product=product).exists()


def test_tiers_are_saved_through_the_catalog_and_audited_once(make_product):
    # given a product with a tier from 3
    product = make_product("steam", max_qty=10)
    TierPrice.objects.create(product=product, min_quantity=3, unit_price=Decimal("9.00"))
    client = signed_in("operator")
    prefix = tier_prefix(client)
    tier_id = TierPrice.objects.get(product=product).pk
    data = with_prefix(product_form(slug="steam", name="Steam", kind="unique", custom_fields="[]", max_qty=10, **{
        "tiers-TOTAL_FORMS": 2, "tiers-INITIAL_FORMS": 1,
        "tiers-0-id": tier_id, "tiers-0-product": product.pk, "tiers-0-min_quantity": 4, "tiers-0-unit_price": "8.50",
        "tiers-1-product": product.pk, "tiers-1-min_quantity": 8, "tiers-1-unit_price": "7.00"}), prefix)
    # when the tier moves to 4 and one from 8 is added
    response = client.post(admin_url(f"catalog/product/{product.pk}/change/"), data)
    # then
    assert response.status_code == 302, response.content.decode()[:3000]
    assert dict(TierPrice.objects.filter(product=product).values_list("min_quantity", "unit_price")) == {
        4: Decimal("8.50"), 8: Decimal("7.00")}
    [entry] = AuditLog.objects.filter(action="tier_prices_change", object_id=str(product.pk))
    assert entry.detail["tiers"] == {"4": "8.50", "8": "7.00"} and entry.actor == "operator-user"
