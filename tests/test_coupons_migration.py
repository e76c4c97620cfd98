"""Migrations orders 0008 and 0009 (at the end). 0008: uses are counted at payment from now on, so each coupon gives back the
uses its orders still pending at the upgrade took at creation; paid and expired orders' counts
stay. Backwards, pending orders hold a use again, never past a limit."""
from __future__ import annotations

from datetime import timedelta

import pytest

from kami.core import clock
from kami.orders.models import email_normalise
from tests.migrating import back_to_latest, migrate_app  # noqa: F401 (fixture)

pytestmark = pytest.mark.django_db(transaction=True)

BEFORE, AFTER = [("orders", "0007_email_norm")], [("orders", "0008_coupon_uses_at_payment")]


def _migrate(targets):
    return migrate_app("orders", targets)


def _order(apps, product, coupon, n, status):
    now = clock.now()
    return apps.get_model("orders", "Order").objects.create(
        order_no=f"MIG{n:04d}", product=product, email="b@example.com", quantity=1, unit_price="10.00",
        amount="9.00", currency="CNY", status=status, gateway="sandbox", token_hash="x" * 64, created_at=now,
        expires_at=now + timedelta(minutes=35), coupon=coupon, discount="1.00")


def test_pending_orders_give_their_uses_back_once(back_to_latest):
    # given, counted the old way: a 4-use coupon with 3 uses taken (1 paid, 2 pending orders; an
    # expired one already gave its use back), and a coupon with no pending order
    old = _migrate(BEFORE)
    product = old.get_model("catalog", "Product").objects.create(slug="m", name="M", price="10.00")
    coupons = old.get_model("catalog", "Coupon").objects
    limited = coupons.create(code="MIG4", kind="fixed", value="1.00", currency="CNY", usage_limit=4, used=3)
    other = coupons.create(code="PAIDONLY", kind="fixed", value="1.00", currency="CNY", used=2)
    for n, status in enumerate(("fulfilled", "pending", "pending", "expired")):
        _order(old, product, limited, n, status)
    _order(old, product, other, 10, "fulfilled")
    _order(old, product, None, 11, "pending")
    # when
    new = _migrate(AFTER)
    # then the count is the paid orders' uses
    counts = dict(new.get_model("catalog", "Coupon").objects.values_list("code", "used"))
    assert counts == {"MIG4": 1, "PAIDONLY": 2}
    # when migrated back, the pending orders hold their uses again
    back = _migrate(BEFORE)
    assert dict(back.get_model("catalog", "Coupon").objects.values_list("code", "used")) == {"MIG4": 3, "PAIDONLY": 2}


def test_stored_unicode_emails_are_normalised_as_new_orders_are(back_to_latest):
    # given orders stored with 0007's form (trimmed, lower-cased) before the IDNA rule
    old = _migrate(AFTER)
    product = old.get_model("catalog", "Product").objects.create(slug="u", name="U", price="10.00")
    for n, (email, norm) in enumerate((("Buyer@ＥＸＡＭＰＬＥ.com", "buyer@ｅｘａｍｐｌｅ.com"),
                                       ("b@ex\u200bample.com", "b@ex\u200bample.com"),
                                       ("Plain@Example.com", "plain@example.com"))):
        _order(old, product, None, 20 + n, "fulfilled")
        old.get_model("orders", "Order").objects.filter(order_no=f"MIG{20 + n:04d}").update(email=email, email_norm=norm)
    # when
    new = _migrate([("orders", "0009_email_norm_idna")])
    # then each has the form the lookup and the pending limit compare (orders.models.email_normalise)
    stored = dict(new.get_model("orders", "Order").objects.filter(order_no__startswith="MIG00").values_list("email", "email_norm"))
    assert stored == {email: email_normalise(email) for email in stored}
    assert set(stored.values()) == {"buyer@example.com", "b@example.com", "plain@example.com"}
