"""A reusable product hands out only keys imported as reusable; a unique one never does
(issue 16: switched to reusable, one purchase took the whole unique stock, unsold, and switched
back the next buyers got the same keys again). Run on every engine."""
from __future__ import annotations

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from kami.catalog.models import Product
from kami.orders.models import Order, OrderKey
from kami.stock.claim import keys_claim
from kami.stock.models import Key
from tests.factories import add_keys
from tests.sandbox_play import enable_sandbox, sandbox_notify
from tests.stock.helpers import import_lines

pytestmark = pytest.mark.django_db(transaction=True)


def _buy(client, product, email):
    response = client.post("/api/v1/orders", {"product": product.slug, "quantity": 1, "email": email,
                                              "gateway": "sandbox"}, content_type="application/json")
    assert response.status_code == 201, response.content
    order = response.json()
    assert sandbox_notify(client, order_no=order["order_no"], amount=order["amount"]).status_code == 200
    return client.get(f"/api/v1/orders/{order['order_no']}", HTTP_X_ORDER_TOKEN=order["token"]).json()


def _force_kind(product, kind):
    """What a raw edit (or a row from before the rule) can still do: bypass product_update."""
    Product.objects.filter(pk=product.pk).update(kind=kind)


def test_import_records_what_each_key_was_imported_as(make_product):
    # given
    unique, reusable = make_product(kind="unique"), make_product(kind="reusable")
    # when
    import_lines(unique, ["U-1", "U-2"])
    import_lines(reusable, ["SHARED-1"])
    # then
    assert list(Key.objects.filter(product=unique).values_list("reusable", flat=True)) == [False, False]
    assert list(Key.objects.filter(product=reusable).values_list("reusable", flat=True)) == [True]


def test_a_kind_switched_behind_the_rule_cannot_hand_out_the_unique_stock(client, make_product):
    # given: three unique keys, then the product made reusable without the catalog's check
    enable_sandbox()
    product = make_product(kind="unique", max_qty=5)
    import_lines(product, ["K-1", "K-2", "K-3"])
    _force_kind(product, "reusable")
    # when: the attacker buys once, the kind goes back, honest buyers buy
    attacker = _buy(client, product, "attacker@example.com")
    _force_kind(product, "unique")
    honest = [_buy(client, product, f"buyer{i}@example.com") for i in range(3)]
    # then: the attacker got nothing, each honest buyer a different key, each key sold once
    assert attacker["status"] == "awaiting_stock" and not attacker.get("keys")
    assert [o["status"] for o in honest] == ["fulfilled"] * 3
    assert sorted(k for o in honest for k in o["keys"]) == ["K-1", "K-2", "K-3"]
    assert Key.objects.filter(product=product, status="sold").count() == 3
    assert not OrderKey.objects.filter(order__order_no=attacker["order_no"]).exists()
    assert OrderKey.objects.filter(key__product=product).count() == 3


def test_reusable_claim_takes_only_reusable_keys_and_unique_claim_never_does(make_product):
    # given: a product holding both (rows from before keys recorded it, or a forced kind)
    product = make_product(kind="unique")
    import_lines(product, ["U-1", "U-2"])
    _force_kind(product, "reusable")
    import_lines(Product.objects.get(pk=product.pk), ["SHARED"])
    shared = Key.objects.get(product=product, reusable=True)
    # when
    as_reusable = _claim(product, 1)
    _force_kind(product, "unique")
    as_unique = _claim(product, 3)
    # then
    assert as_reusable == [shared.pk]
    assert as_unique is None  # two unique keys cannot serve three; the shared key is not one of them
    assert len(_claim(product, 2)) == 2
    assert Key.objects.get(pk=shared.pk).status == "available"
    assert not Order.objects.exists()


def _claim(product, quantity):
    with transaction.atomic():  # as in confirm: the claim's row locks need a transaction
        return keys_claim(product=Product.objects.get(pk=product.pk), quantity=quantity, wait=True)


def test_the_claim_with_its_reusable_filter_still_reads_the_claim_index(make_product):
    # given: a hot product with most keys sold, beside another product
    hot, other = make_product(), make_product()
    add_keys(hot, (f"HOT-{i}" for i in range(6000)))
    add_keys(other, (f"OTHER-{i}" for i in range(3000)))
    sold = list(Key.objects.filter(product=hot).order_by("id").values_list("id", flat=True)[:5500])
    Key.objects.filter(id__in=sold).update(status=Key.Status.SOLD)
    with connection.cursor() as cursor:
        cursor.execute({"postgresql": "ANALYZE stock_key", "mysql": "ANALYZE TABLE stock_key",
                        "sqlite": "ANALYZE"}[connection.vendor])
        if connection.vendor == "mysql":
            cursor.fetchall()
    # when: the claim's own SELECT, explained
    with CaptureQueriesContext(connection) as queries:
        assert len(_claim(hot, 5)) == 5
    select = next(q["sql"] for q in queries.captured_queries if q["sql"].startswith("SELECT") and "LIMIT 5" in q["sql"])
    with connection.cursor() as cursor:
        cursor.execute(("EXPLAIN QUERY PLAN " if connection.vendor == "sqlite" else "EXPLAIN ") + select)
        plan = "\n".join(" ".join(str(c) for c in row) for row in cursor.fetchall())
    # then
    assert "key_claim" in plan, plan
    assert "Seq Scan" not in plan and "filesort" not in plan.lower() and "TEMP B-TREE" not in plan, plan
