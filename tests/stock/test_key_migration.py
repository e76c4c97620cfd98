"""Migration stock 0006: keys already stored take their product's kind as what they were
imported as, and are marked sealed the old way (so they still open)."""
from __future__ import annotations

import pytest

from tests.migrating import back_to_latest, migrate_app  # noqa: F401 (fixture)

pytestmark = pytest.mark.django_db(transaction=True)

BEFORE, AFTER = [("stock", "0005_field_labels")], [("stock", "0006_key_reusable_seal")]


def _migrate(targets):
    return migrate_app("stock", targets)


def test_existing_keys_take_their_products_kind_and_the_old_seal(back_to_latest):
    # given: keys stored before the migration, in a unique and a reusable product
    old = _migrate(BEFORE)
    product, key = old.get_model("catalog", "Product"), old.get_model("stock", "Key")
    unique = product.objects.create(slug="u", name="U", price="1.00", kind="unique")
    reusable = product.objects.create(slug="r", name="R", price="1.00", kind="reusable")
    for i, p in enumerate((unique, unique, reusable)):
        key.objects.create(product=p, key_id="ktest", ciphertext=b"x", fingerprint=f"{i:064x}")
    # when
    new = _migrate(AFTER)
    # then
    rows = new.get_model("stock", "Key").objects.order_by("id").values_list("product__slug", "reusable", "seal")
    assert list(rows) == [("u", False, 1), ("u", False, 1), ("r", True, 1)]
    assert new.get_model("stock", "Key")._meta.get_field("seal").default == 2
