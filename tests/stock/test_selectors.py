"""stock_summary: counts per product and status, and orders waiting for keys; available_count,
the one count of keys left to sell."""
from __future__ import annotations

import pytest

from kami.stock.models import Key
from kami.stock.selectors import available_count, available_counts_capped, awaiting_count, stock_summary
from tests.factories import add_keys
from tests.stock.helpers import awaiting_order, import_lines


@pytest.mark.django_db(transaction=True)
def test_available_count_counts_only_keys_left_to_sell_and_stops_at_at_most(make_product):
    # given: five keys, one sold and one void; another product's keys beside them
    product, other = make_product("counted"), make_product("other")
    import_lines(product, ["A", "B", "C", "D", "E"])
    import_lines(other, ["F", "G"])
    first, second = Key.objects.filter(product=product).order_by("id").values_list("pk", flat=True)[:2]
    Key.objects.filter(pk=first).update(status="sold")
    Key.objects.filter(pk=second).update(status="void")
    # when / then
    assert available_count(product_id=product.pk) == 3
    assert available_count(product_id=product.pk, at_most=2) == 2
    assert available_count(product_id=product.pk, at_most=10) == 3
    assert available_count(product_id=other.pk) == 2


@pytest.mark.django_db(transaction=True)
def test_stock_summary_counts_per_product(make_product):
    # given
    full = make_product("full", low_stock=2)
    low = make_product("low", low_stock=5)
    empty = make_product("empty")
    import_lines(full, ["A", "B", "C", "D"])
    import_lines(low, ["E", "F", "G"])
    Key.objects.filter(pk=Key.objects.filter(product=full).order_by("id").first().pk).update(status="sold")
    Key.objects.filter(pk=Key.objects.filter(product=low).order_by("-id").first().pk).update(status="void")
    awaiting_order(empty, quantity=2)
    awaiting_order(empty, quantity=1)
    # when
    rows = {row.product.slug: row for row in stock_summary()}
    # then
    assert [(r.available, r.sold, r.void, r.awaiting, r.low) for r in (rows["full"], rows["low"], rows["empty"])] == [
        (3, 1, 0, 0, False),
        (2, 0, 1, 0, True),
        (0, 0, 0, 2, False),
    ]
    assert list(rows) == ["full", "low", "empty"]
    assert awaiting_count(product=empty) == 2


@pytest.mark.django_db
def test_available_counts_capped_counts_available_keys_up_to_the_cap(make_product):
    # given: 5 keys (one sold), 2 keys, none
    many, few, none = make_product("many"), make_product("few"), make_product("none")
    add_keys(many, ["M1", "M2", "M3", "M4", "M5"])
    add_keys(few, ["F1", "F2"])
    Key.objects.filter(pk=Key.objects.filter(product=many).order_by("id").first().pk).update(status="sold")
    # when
    counts = available_counts_capped(product_ids=[many.pk, few.pk, none.pk], cap=3)
    # then: the big stock reads as the cap, the short one as its count, the empty one not at all
    assert counts == {many.pk: 3, few.pk: 2}
