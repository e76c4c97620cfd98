"""Volume prices: price_for picks the highest tier reached, and every caller agrees with it."""
from __future__ import annotations

from decimal import Decimal

import pytest
from django.db import IntegrityError, transaction

from kami.catalog.models import TierPrice
from kami.catalog.services import price_for, tier_price_set
from kami.core.errors import BadInput
from tests.factories import add_keys
from tests.sandbox_play import enable_sandbox

pytestmark = pytest.mark.django_db


def test_price_for_uses_the_highest_tier_reached(make_product):
    # given a product at 10.00 with tiers from 3 and from 5
    product = make_product(price=Decimal("10.00"))
    tier_price_set(product=product, min_quantity=3, unit_price=Decimal("9.00"))
    tier_price_set(product=product, min_quantity=5, unit_price=Decimal("8.50"))
    # when / then
    assert price_for(product=product, quantity=2) == (Decimal("10.00"), Decimal("20.00"))
    assert price_for(product=product, quantity=3) == (Decimal("9.00"), Decimal("27.00"))
    assert price_for(product=product, quantity=4) == (Decimal("9.00"), Decimal("36.00"))
    assert price_for(product=product, quantity=5) == (Decimal("8.50"), Decimal("42.50"))


def test_price_for_is_one_query(make_product, django_assert_num_queries):
    # given
    product = make_product()
    tier_price_set(product=product, min_quantity=2, unit_price=Decimal("1.00"))
    # when / then
    with django_assert_num_queries(1):
        price_for(product=product, quantity=7)


def test_tier_price_set_changes_an_existing_tier(make_product):
    # given
    product = make_product()
    tier_price_set(product=product, min_quantity=2, unit_price=Decimal("5.00"))
    # when
    tier_price_set(product=product, min_quantity=2, unit_price=Decimal("4.555"))
    # then
    assert list(TierPrice.objects.values_list("min_quantity", "unit_price")) == [(2, Decimal("4.56"))]


@pytest.mark.parametrize("min_quantity,unit_price,message", [
    (1, "5.00", "Tiers start at 2|阶梯价从 2 件起"),
    (11, "5.00", "max quantity"),
    (2, "-1", "negative"),
])
def test_tier_price_set_refuses_bad_input(make_product, min_quantity, unit_price, message):
    # given a product sold 1..10 at a time
    product = make_product(max_qty=10)
    # when / then
    with pytest.raises(BadInput, match=message):
        tier_price_set(product=product, min_quantity=min_quantity, unit_price=Decimal(unit_price))
    assert not TierPrice.objects.exists()


def test_the_database_refuses_a_duplicate_or_a_tier_below_two(make_product):
    # given
    product = make_product()
    TierPrice.objects.create(product=product, min_quantity=2, unit_price=Decimal("1.00"))
    # when / then
    with pytest.raises(IntegrityError), transaction.atomic():
        TierPrice.objects.create(product=product, min_quantity=2, unit_price=Decimal("2.00"))
    with pytest.raises(IntegrityError), transaction.atomic():
        TierPrice.objects.create(product=product, min_quantity=1, unit_price=Decimal("2.00"))


@pytest.mark.parametrize("quantity,amount", [(1, "10.00"), (2, "18.00"), (3, "27.00"), (4, "32.00")])
def test_the_api_charges_the_tier_price(client, make_product, quantity, amount):
    # given tiers from 2 (9.00) and 4 (8.00), and stock
    enable_sandbox()
    product = make_product(price=Decimal("10.00"))
    tier_price_set(product=product, min_quantity=2, unit_price=Decimal("9.00"))
    tier_price_set(product=product, min_quantity=4, unit_price=Decimal("8.00"))
    add_keys(product, [f"TIER-KEY-{i}" for i in range(5)])
    # when
    response = client.post("/api/v1/orders", {"product": product.slug, "quantity": quantity, "email": "b@example.com",
                                              "gateway": "sandbox"}, content_type="application/json")
    # then
    assert response.status_code == 201, response.content
    assert response.json()["amount"] == amount


def test_a_single_item_is_priced_without_a_query(make_product, django_assert_num_queries):
    # given a product with a tier from 2 (tiers never start below 2)
    product = make_product(price=Decimal("10.00"))
    tier_price_set(product=product, min_quantity=2, unit_price=Decimal("8.00"))
    # when / then: quantity 1 is the list price, read from the product row alone
    with django_assert_num_queries(0):
        assert price_for(product=product, quantity=1) == (Decimal("10.00"), Decimal("10.00"))
