"""A product's kind is fixed once it has keys or orders (issue 16): through the catalog service
and through the back office, which saves through it."""
from __future__ import annotations

import pytest
from django.utils import translation

from kami.catalog.models import Product
from kami.catalog.services import product_update
from kami.core.errors import Conflict
from tests.backoffice.staffing import admin_url, signed_in
from tests.backoffice.test_catalog_admin import product_form, tier_prefix, with_prefix
from tests.factories import add_keys, make_orders
from tests.stock.helpers import import_lines

pytestmark = pytest.mark.django_db

REFUSED = "kind cannot change once the product has keys or orders; create a new product"


def _switch(product: Product, kind: str) -> Product:
    edited = Product.objects.get(pk=product.pk)
    edited.kind = kind
    return product_update(product=edited, actor="test")


def test_kind_of_a_product_with_keys_is_fixed(make_product):
    # given
    product = make_product(kind="unique")
    add_keys(product, ["K-1"])
    # when
    with translation.override("en"), pytest.raises(Conflict) as refused:
        _switch(product, "reusable")
    # then
    assert (refused.value.code, str(refused.value)) == ("kind_fixed", REFUSED)
    assert Product.objects.get(pk=product.pk).kind == "unique"


def test_kind_of_a_product_with_orders_is_fixed(make_product):
    # given: a manual product, one order, no keys
    product = make_product(kind="manual")
    make_orders(product, [1])
    # when / then
    with translation.override("en"), pytest.raises(Conflict, match="create a new product"):
        _switch(product, "unique")
    assert Product.objects.get(pk=product.pk).kind == "manual"


def test_kind_of_a_new_product_can_change_and_other_edits_pass(make_product):
    # given
    product = make_product(kind="unique")
    # when
    _switch(product, "reusable")
    add_keys(Product.objects.get(pk=product.pk), ["SHARED"])
    edited = Product.objects.get(pk=product.pk)
    edited.name = "Renamed"
    product_update(product=edited, actor="test")
    # then
    stored = Product.objects.get(pk=product.pk)
    assert (stored.kind, stored.name) == ("reusable", "Renamed")


def _change(client, product, **fields):
    current = {"slug": product.slug, "name": product.name, "kind": product.kind, "custom_fields": "[]",
               "price": str(product.price)}
    data = with_prefix(product_form(**{**current, **fields}), tier_prefix(client))
    return client.post(admin_url(f"catalog/product/{product.pk}/change/"), data)


def test_operator_cannot_switch_a_stocked_product_to_reusable_in_the_back_office(make_product):
    # given: unique stock imported
    product = make_product("steam", kind="unique")
    import_lines(product, ["K-1", "K-2", "K-3"])
    client = signed_in("operator")
    # when
    response = _change(client, product, kind="reusable")
    # then: the form says why, and nothing changed
    assert response.status_code == 200
    page = response.content.decode()
    assert REFUSED in page or "商品已有卡密或订单后不能再修改类型" in page
    assert Product.objects.get(pk=product.pk).kind == "unique"


def test_other_edits_of_a_stocked_product_still_save_in_the_back_office(make_product):
    # given
    product = make_product("steam", kind="unique")
    import_lines(product, ["K-1"])
    client = signed_in("operator")
    # when
    response = _change(client, product, name="Steam 50")
    # then
    assert response.status_code == 302, response.content.decode()[:3000]
    assert Product.objects.get(pk=product.pk).name == "Steam 50"
