"""Product and tier edits are audited by the catalog's services, whoever calls them (the back
office no longer writes those audit rows itself)."""
from __future__ import annotations

from decimal import Decimal

import pytest

from kami.audit.models import AuditLog
from kami.catalog.models import Product, TierPrice
from kami.catalog.services import product_add, product_update, tier_prices_save
from kami.core.errors import BadInput

pytestmark = pytest.mark.django_db


def test_product_update_audits_a_price_change_and_not_a_name_change(make_product):
    # given
    product = make_product(price=Decimal("10.00"))
    edited = Product.objects.get(pk=product.pk)
    edited.price, edited.name = Decimal("12.50"), "Renamed"
    # when
    product_update(product=edited, actor="alice", ip="10.0.0.9")
    renamed = Product.objects.get(pk=product.pk)
    renamed.name = "Renamed again"
    product_update(product=renamed, actor="alice")
    # then: one row, the price as [before, after]
    [entry] = AuditLog.objects.filter(action="product_change", object_id=str(product.pk))
    assert (entry.actor, entry.ip, entry.detail) == ("alice", "10.0.0.9", {"price": ["10.00", "12.50"]})


def test_product_add_stores_and_audits():
    # when
    product = product_add(product=Product(slug="new", name="New", price=Decimal("5.00")), actor="bob")
    # then
    entry = AuditLog.objects.get(action="product_create")
    assert entry.object_id == str(product.pk) and entry.actor == "bob" and entry.detail["price"] == ["None", "5.00"]


def test_tier_prices_save_replaces_the_tiers_and_audits_only_a_change(make_product):
    # given
    product = make_product(max_qty=10)
    TierPrice.objects.create(product=product, min_quantity=3, unit_price=Decimal("9.00"))
    # when
    stored = tier_prices_save(product=product, tiers={5: Decimal("8.555"), 2: Decimal("9.50")}, actor="alice")
    tier_prices_save(product=product, tiers={5: Decimal("8.56"), 2: Decimal("9.50")}, actor="alice")
    # then: the old tier is gone, prices are rounded to cents, one audit row for one change
    assert stored == {"2": "9.50", "5": "8.56"}
    assert AuditLog.objects.filter(action="tier_prices_change").count() == 1


def test_tier_prices_save_refuses_a_tier_past_the_max_quantity_and_keeps_the_old_ones(make_product):
    # given
    product = make_product(max_qty=4)
    TierPrice.objects.create(product=product, min_quantity=3, unit_price=Decimal("9.00"))
    # when / then
    with pytest.raises(BadInput, match="max quantity 4"):
        tier_prices_save(product=product, tiers={5: Decimal("8.00")}, actor="alice")
    assert list(TierPrice.objects.values_list("min_quantity", flat=True)) == [3]
    assert not AuditLog.objects.filter(action="tier_prices_change").exists()
