"""Products made and changed over the merchant API: through the catalog's services (its rules,
its audit rows under the token's name), Idempotency-Key on the create, problems naming the input."""
from __future__ import annotations

import json
from decimal import Decimal

from django.utils import translation

from kami.audit.models import AuditLog
from kami.catalog.models import Product
from tests.api.conftest import Api, assert_problem
from tests.factories import add_keys

NEW = {"slug": "steam-50", "name": "Steam 50", "price": "45.5", "currency": "usd", "min_qty": 1, "max_qty": 5,
       "low_stock": 10}


def test_create_makes_the_product_audited_under_the_token_name(make_token):
    # given
    api = Api(make_token("products", name="erp"))
    # when
    response = api.post("/products", NEW)
    # then
    assert response.status_code == 201, response.content
    assert response.json() == {"slug": "steam-50", "name": "Steam 50", "kind": "unique", "price": "45.50",
                               "currency": "USD", "min_qty": 1, "max_qty": 5, "low_stock": 10, "active": True}
    product = Product.objects.get(slug="steam-50")
    assert product.price == Decimal("45.50") and product.currency == "USD"
    entry = AuditLog.objects.get(action="product_create")
    assert entry.actor == "api:erp" and entry.object_id == str(product.pk)


def test_create_repeated_with_its_key_answers_the_same_and_makes_one_product(api_as):
    # given
    api = api_as("products")
    first = api.post("/products", NEW, key="make-steam")
    # when
    again = api.post("/products", NEW, key="make-steam")
    other_body = api.post("/products", {**NEW, "price": "1.00"}, key="make-steam")
    # then
    assert first.status_code == again.status_code == 201 and again.json() == first.json()
    assert again["Idempotent-Replayed"] == "true"
    assert Product.objects.count() == 1 and AuditLog.objects.filter(action="product_create").count() == 1
    assert_problem(other_body, 422, "idempotency-key-reused")


def test_create_refuses_a_taken_slug_and_bad_values_naming_them(api_as, make_product):
    # given
    make_product("steam-50")
    api = api_as("products")
    # when / then
    assert "already exists" in assert_problem(api.post("/products", NEW), 409, "conflict")["detail"]
    fresh = {**NEW, "slug": "other"}
    assert "max_qty" in assert_problem(api.post("/products", {**fresh, "min_qty": 6}), 422, "invalid")["detail"]
    assert "price" in assert_problem(api.post("/products", {**fresh, "price": "1.234"}), 422, "invalid")["detail"]
    assert "kind" in assert_problem(api.post("/products", {**fresh, "kind": "magic"}), 422, "invalid")["detail"]
    assert "slug" in assert_problem(api.post("/products", {**fresh, "slug": "a b"}), 422, "invalid")["detail"]
    assert_problem(api.post("/products", {**fresh, "name": "   "}), 422, "invalid")
    assert_problem(api.post("/products", fresh, key=None), 400, "idempotency-key-missing")
    assert Product.objects.count() == 1


def test_update_changes_only_the_fields_sent_and_audits_them(make_token, make_product):
    # given
    product = make_product("gift-10", price=Decimal("10.00"), low_stock=5)
    api = Api(make_token("products", name="erp"))
    # when
    response = api.patch("/products/gift-10", {"price": "12.5", "low_stock": 20, "active": False})
    # then
    assert response.status_code == 200, response.content
    assert response.json() == {"slug": "gift-10", "name": "Test product", "kind": "unique", "price": "12.50",
                               "currency": "CNY", "min_qty": 1, "max_qty": 10, "low_stock": 20, "active": False}
    product.refresh_from_db()
    assert (product.price, product.low_stock, product.active, product.name) == (Decimal("12.50"), 20, False,
                                                                                "Test product")
    entry = AuditLog.objects.get(action="product_change")
    assert entry.actor == "api:erp"
    assert entry.detail["price"] == ["10.00", "12.50"] and entry.detail["active"] == ["True", "False"]


def test_the_kind_is_fixed_once_the_product_has_keys(api_as, make_product):
    # given
    make_product("fresh")
    add_keys(make_product("stocked"), ["A"])
    api = api_as("products")
    # when
    fixed = api.patch("/products/stocked", {"kind": "reusable"})
    asked = api.client.patch("/api/v1/merchant/products/stocked", json.dumps({"kind": "reusable"}),
                             content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {api.secret}",
                             HTTP_ACCEPT_LANGUAGE="zh-CN")
    free = api.patch("/products/fresh", {"kind": "reusable"})
    # then: the catalog's own refusal, in English unless the caller asked for a language
    refusal = "kind cannot change once the product has keys or orders; create a new product"
    assert assert_problem(fixed, 409, "conflict")["detail"] == refusal
    with translation.override("zh-hans"):
        assert assert_problem(asked, 409, "conflict")["detail"] == translation.gettext(refusal) != refusal
    assert Product.objects.get(slug="stocked").kind == "unique"
    assert free.status_code == 200 and free.json()["kind"] == "reusable"


def test_update_refuses_unknown_products_nulls_and_quantities_crossing_the_stored_ones(api_as, make_product):
    # given
    make_product("gift-10", min_qty=2, max_qty=5)
    api = api_as("products")
    # when / then
    assert_problem(api.patch("/products/nope", {"active": False}), 404, "not-found")
    assert_problem(api.patch("/products/gift-10", {"price": None}), 422, "invalid")
    crossing = assert_problem(api.patch("/products/gift-10", {"max_qty": 1}), 422, "invalid")
    assert "min_qty 2, max_qty 1" in crossing["detail"]
    assert api.patch("/products/gift-10", {"min_qty": 1, "max_qty": 1}).status_code == 200
    assert Product.objects.get(slug="gift-10").max_qty == 1
