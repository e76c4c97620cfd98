"""Coupons: the discount price_for gives, the specific reasons a coupon is refused (translated),
one use counted per paid order (none at checkout, so nothing to give back when an order expires
unpaid), and the staff services. The held-for-a-person path: tests/fulfilment/test_coupon_uses.py."""
from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.test import Client
from django.utils import translation

from kami.audit.models import AuditLog
from kami.catalog.coupons import CouponRefused, coupon_create, coupon_deactivate, coupon_for, coupon_update
from kami.catalog.models import Coupon
from kami.catalog.services import price_for, tier_price_set
from kami.core import clock
from kami.core.errors import BadInput, NotFound
from kami.orders.models import Order
from kami.orders.services import order_create, orders_expire
from tests.factories import add_keys
from tests.sandbox_play import enable_sandbox, sandbox_notify

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def real_time():
    yield
    clock.travel(None)


def coupon(code="SAVE10", kind="percent", value="10", **fields):
    return coupon_create(code=code, kind=kind, value=Decimal(value), actor="owner", **fields)


def buy(product, code, email="buyer@example.com", quantity=1):
    return order_create(product=product, quantity=quantity, email=email, gateway="sandbox", coupon=code)[0]


# ---- the price -------------------------------------------------------------------------------

def test_percent_rounds_half_up_to_cents_after_the_tier_price(make_product):
    # given a 10.00 product with a tier at 3 (3.33 each) and a 15 % coupon
    product = make_product(price=Decimal("10.00"))
    tier_price_set(product=product, min_quantity=3, unit_price=Decimal("3.33"))
    coupon(value="15")
    # when
    price = price_for(product=product, quantity=3, coupon="save10")
    # then the tier comes first (9.99), then 15 % of it: 1.4985 → 1.50 (half up)
    assert (price.unit, price.subtotal, price.discount, price.amount) == (
        Decimal("3.33"), Decimal("9.99"), Decimal("1.50"), Decimal("8.49"))
    unit, amount = price  # still unpacks as before
    assert (unit, amount) == (Decimal("3.33"), Decimal("8.49"))


def test_a_half_cent_rounds_up(make_product):
    # given 10 % of 0.05 is 0.005
    product = make_product(price=Decimal("0.05"))
    coupon(value="10")
    # when / then
    assert price_for(product=product, quantity=1, coupon="SAVE10").discount == Decimal("0.01")


def test_fixed_comes_off_the_order_and_never_below_one_cent(make_product):
    # given a 5.00 product and fixed coupons of 2 and of 50
    product = make_product(price=Decimal("5.00"))
    coupon("TWO", kind="fixed", value="2")
    coupon("HUGE", kind="fixed", value="50")
    # when / then: 2 × 5.00 − 2.00; and a discount larger than the order leaves one cent to pay
    assert price_for(product=product, quantity=2, coupon="two").amount == Decimal("8.00")
    huge = price_for(product=product, quantity=1, coupon="huge")
    assert (huge.discount, huge.amount) == (Decimal("4.99"), Decimal("0.01"))


def test_a_hundred_percent_coupon_leaves_one_cent(make_product):
    product = make_product(price=Decimal("9.90"))
    coupon("FREE", value="100")
    assert price_for(product=product, quantity=1, coupon="FREE").amount == Decimal("0.01")


def test_no_coupon_is_the_plain_price(make_product):
    product = make_product(price=Decimal("9.90"))
    price = price_for(product=product, quantity=2)
    assert price == (Decimal("9.90"), Decimal("19.80")) and price.discount == 0 and price.coupon is None


# ---- refusals ---------------------------------------------------------------------------------

@pytest.mark.parametrize("setup,reason,english,chinese", [
    (lambda p: None, "coupon_unknown", "does not exist", "不存在"),
    (lambda p: coupon() and coupon_deactivate(code="SAVE10", actor="o"), "coupon_inactive",
     "no longer valid", "停用"),
    (lambda p: coupon(starts_at=clock.now() + timedelta(days=1)), "coupon_not_started", "not valid yet", "尚未生效"),
    (lambda p: coupon(expires_at=clock.now() - timedelta(seconds=1)), "coupon_expired", "expired", "过期"),
    (lambda p: Coupon.objects.filter(pk=coupon(usage_limit=1).pk).update(used=1), "coupon_used_up", "used up", "用完"),
])
def test_each_refusal_names_its_reason_in_both_languages(make_product, setup, reason, english, chinese):
    # given
    product = make_product()
    setup(product)
    # when / then
    for language, text in (("en", english), ("zh-hans", chinese)):
        with translation.override(language), pytest.raises(CouponRefused) as refused:
            price_for(product=product, quantity=1, coupon="SAVE10")
        assert refused.value.code == reason and text in str(refused.value)
        assert refused.value.details["fields"]["coupon"] == str(refused.value)


def test_a_coupon_for_other_products_or_another_currency_is_refused(make_product):
    # given a coupon for one product and a fixed CNY coupon
    mine, other = make_product(), make_product()
    usd = make_product(currency="USD")
    coupon("ONLYMINE", products=[mine])
    coupon("CNYOFF", kind="fixed", value="1", currency="CNY")
    # when / then
    assert price_for(product=mine, quantity=1, coupon="onlymine").discount == Decimal("2.99")
    for product, code in ((other, "ONLYMINE"), (usd, "CNYOFF")):
        with translation.override("en"), pytest.raises(CouponRefused, match="does not apply to this product"):
            price_for(product=product, quantity=1, coupon=code)


def test_a_refused_coupon_creates_no_order(make_product):
    # given an exhausted coupon
    product = make_product()
    add_keys(product, ["K-1"])
    Coupon.objects.filter(pk=coupon(usage_limit=1).pk).update(used=1)
    # when / then
    with pytest.raises(CouponRefused):
        buy(product, "SAVE10")
    assert not Order.objects.exists()


# ---- uses -------------------------------------------------------------------------------------

@pytest.mark.django_db(transaction=True)
def test_an_order_remembers_the_discount_and_its_use_is_counted_when_it_is_paid(make_product):
    # given
    enable_sandbox()
    product = make_product(price=Decimal("20.00"))
    add_keys(product, ["K-1", "K-2"])
    code = coupon(usage_limit=2)
    # when
    order = buy(product, " save10 ")
    # then the order has the discount, and no use is taken until it is paid
    code.refresh_from_db()
    assert code.used == 0
    assert (order.coupon_id, order.discount, order.amount, order.unit_price) == (
        code.pk, Decimal("2.00"), Decimal("18.00"), Decimal("20.00"))
    assert order.events.get(kind="created").detail["coupon"] == "SAVE10"
    # when it is paid
    assert sandbox_notify(Client(), order_no=order.order_no, amount=str(order.amount)).content == b"ok"
    # then
    code.refresh_from_db()
    assert code.used == 1 and Order.objects.get(pk=order.pk).status == "fulfilled"


@pytest.mark.django_db(transaction=True)
def test_the_last_use_goes_to_the_first_order_paid_and_checkout_then_refuses_it(make_product):
    # given a one-use coupon and two orders with it (both may check out: unpaid orders hold no use)
    enable_sandbox()
    product = make_product()
    add_keys(product, ["K-1", "K-2"])
    coupon(usage_limit=1)
    first = buy(product, "SAVE10", email="first@example.com")
    second = buy(product, "SAVE10", email="second@example.com")
    # when the second is paid first, then the first
    for order in (second, first):
        assert sandbox_notify(Client(), order_no=order.order_no, amount=str(order.amount)).content == b"ok"
    # then the use went to the order paid first, the other is held, and checkout refuses the code
    assert (Order.objects.get(pk=second.pk).status, Order.objects.get(pk=first.pk).status) == ("fulfilled", "flagged")
    assert Coupon.objects.get().used == 1
    with pytest.raises(CouponRefused, match="used up"), translation.override("en"):
        buy(product, "SAVE10", email="third@example.com")
    assert Order.objects.count() == 2


@pytest.mark.django_db(transaction=True)
def test_a_coupon_expiring_between_checkout_and_payment_still_counts_at_its_price(make_product):
    # given an order priced with a coupon that expires before the order is paid
    enable_sandbox()
    product = make_product()
    add_keys(product, ["K-1", "K-2"])
    code = coupon(usage_limit=5, expires_at=clock.now() + timedelta(minutes=1))
    order = buy(product, "SAVE10")
    clock.travel(timedelta(minutes=2))
    # when it is paid
    assert sandbox_notify(Client(), order_no=order.order_no, amount=str(order.amount)).content == b"ok"
    # then the buyer gets what they were priced, the use is counted, and new checkouts are refused
    code.refresh_from_db()
    assert (Order.objects.get(pk=order.pk).status, code.used) == ("fulfilled", 1)
    with translation.override("en"), pytest.raises(CouponRefused, match="expired"):
        buy(product, "SAVE10", email="late@example.com")


@pytest.mark.django_db(transaction=True)
def test_an_unpaid_order_expiring_leaves_the_count_alone_and_a_paid_one_keeps_its_use(make_product, settings):
    # given two orders with the coupon: one paid, one abandoned
    enable_sandbox()
    product = make_product()
    add_keys(product, ["K-1", "K-2"])
    code = coupon(usage_limit=2)
    paid, abandoned = buy(product, "SAVE10", "a@example.com"), buy(product, "SAVE10", "b@example.com")
    assert sandbox_notify(Client(), order_no=paid.order_no, amount=str(paid.amount)).content == b"ok"
    # when both are past expiry and the sweep runs twice
    clock.travel(timedelta(minutes=settings.KAMI_ORDER_TTL_MINUTES, seconds=settings.KAMI_PAYMENT_GRACE_SECONDS + 1))
    expired = orders_expire()
    again = orders_expire()
    # then the count is the paid order's use: nothing was held, nothing is given back
    code.refresh_from_db()
    assert expired == [abandoned.pk] and again == []
    assert code.used == 1
    assert Order.objects.get(pk=paid.pk).status == "fulfilled"
    assert not Order.objects.get(pk=abandoned.pk).events.filter(kind="coupon_released").exists()


# ---- staff ------------------------------------------------------------------------------------

def test_create_normalises_the_code_and_writes_the_audit_log(make_product):
    # given
    product = make_product()
    # when
    created = coupon_create(code=" spring-２０ ", kind="fixed", value="3", products=[product], usage_limit=5,
                            actor="owner", ip="10.0.0.1")
    # then full-width digits and case are folded; the currency comes from the product
    assert (created.code, created.currency, created.value) == ("SPRING-20", "CNY", Decimal("3.00"))
    assert coupon_for(code="Spring-20", product=product).pk == created.pk
    log = AuditLog.objects.get(action="coupon_create")
    assert (log.actor, log.ip, log.object_id, log.detail["products"]) == ("owner", "10.0.0.1", str(created.pk), [product.slug])


@pytest.mark.parametrize("fields,message", [
    ({"code": "x"}, "3 to 32"),
    ({"code": "no spaces"}, "3 to 32"),
    ({"kind": "bogus"}, "fixed, percent"),
    ({"value": "0"}, "above 0"),
    ({"kind": "percent", "value": "101"}, "between 0 and 100"),
    ({"value": "abc"}, "not a number"),
    ({"usage_limit": 0}, "at least 1"),
    ({"starts_at": "later"}, "after starts_at"),
])
def test_create_refuses_bad_input_with_the_fix(make_product, fields, message):
    make_product()
    args = {"code": "GOOD", "kind": "fixed", "value": "1", **fields}
    if args.get("starts_at") == "later":
        args["starts_at"], args["expires_at"] = clock.now(), clock.now() - timedelta(days=1)
    with pytest.raises(BadInput, match=message):
        coupon_create(actor="owner", **args)
    assert not Coupon.objects.exists()


def test_a_coupon_for_a_product_that_does_not_exist_is_refused(make_product):
    product = make_product()
    with pytest.raises(BadInput, match="no product"):
        coupon(products=[product.pk + 1000])


def test_a_code_is_unique_whatever_its_case(make_product):
    make_product()
    coupon("SAVE10")
    with pytest.raises(BadInput, match="already exists"):
        coupon("save10")


def test_a_fixed_coupon_in_a_shop_of_several_currencies_needs_one(make_product):
    make_product(currency="CNY")
    make_product(currency="USD")
    with pytest.raises(BadInput, match="needs a currency"):
        coupon("FIVE", kind="fixed", value="5")
    assert coupon("FIVE", kind="fixed", value="5", currency="usd").currency == "USD"


def test_update_changes_fields_but_not_below_the_uses_taken(make_product):
    # given a coupon used 3 times
    product = make_product()
    created = coupon(usage_limit=5)
    Coupon.objects.filter(pk=created.pk).update(used=3)
    # when / then
    with pytest.raises(BadInput, match="below the 3 uses"):
        coupon_update(code="save10", usage_limit=2, actor="owner")
    changed = coupon_update(code="save10", usage_limit=3, value="20", products=[product], actor="owner")
    assert (changed.usage_limit, changed.value, list(changed.products.all())) == (3, Decimal("20.00"), [product])
    assert AuditLog.objects.get(action="coupon_update").detail["changed"]["value"] == "20.00"
    with pytest.raises(NotFound):
        coupon_update(code="nope", value="1", actor="owner")


def test_deactivate_stops_it_and_lists_show_it(make_product):
    # given
    make_product()
    coupon("OLD")
    coupon("NEW")
    # when
    coupon_deactivate(code="old", actor="owner", ip="10.0.0.2")
    # then
    assert dict(Coupon.objects.values_list("code", "active")) == {"NEW": True, "OLD": False}
    assert AuditLog.objects.filter(action="coupon_deactivate", ip="10.0.0.2").count() == 1
