"""The order pages of the back office: who may open them, search and filters on the list, the
detail page's timeline, and no key plaintext anywhere (keys show by fingerprint prefix only)."""
from __future__ import annotations

from datetime import datetime, time, timedelta
from decimal import Decimal

import pytest
from django.test import Client
from django.utils import timezone

from kami.core import clock
from kami.delivery.models import DeliveryAttempt, OutboxMessage
from kami.orders.models import Order, OrderKey
from kami.orders.services import order_create
from kami.payments.models import Notification
from tests.backoffice import staffing
from tests.backoffice.staffing import admin_url
from tests.factories import add_keys, make_orders
from tests.sandbox_play import enable_sandbox, sandbox_notify

pytestmark = pytest.mark.django_db

ROLES = ("owner", "operator", "support")
PLAIN = ["PLAIN-KEY-AAAA-0001", "PLAIN-KEY-BBBB-0002", "PLAIN-KEY-CCCC-0003", "PLAIN-KEY-DDDD-0004"]
FIELDS = [{"name": "phone", "label": "Phone to top up", "required": True, "max_length": 20}]


def paid_order(product, quantity=1, *, trade_no=None, email=None) -> Order:
    """An order paid through the sandbox gateway, as a real notification pays it."""
    (order,) = make_orders(product, [quantity])
    if email:
        Order.objects.filter(pk=order.pk).update(email=email)
    return pay(order, trade_no=trade_no)


def pay(order, *, trade_no=None) -> Order:
    response = sandbox_notify(Client(), order_no=order.order_no, amount=str(order.amount), trade_no=trade_no)
    assert response.content == b"ok"
    order.refresh_from_db()
    return order


def shop(make_product, keys=PLAIN):
    enable_sandbox()
    product = make_product("gift", name="Gift card")
    add_keys(product, keys)
    return product


def signed_in(role: str, username: str | None = None, language: str = "en") -> Client:
    """A signed-in staff client reading the back office in `language` (English by default, so
    the tests read the same words as the code)."""
    client = staffing.signed_in(role, username)
    client.defaults["HTTP_ACCEPT_LANGUAGE"] = language
    return client


def detail_url(order) -> str:
    return admin_url(f"orders/order/{order.pk}/change/")


def texts(response) -> str:
    return response.content.decode()


@pytest.mark.parametrize("page", ["list", "detail", "awaiting"])
def test_every_role_may_read_the_order_pages(make_product, page):
    order = paid_order(shop(make_product))
    url = {"list": admin_url("orders/order/"), "detail": detail_url(order),
           "awaiting": admin_url("orders/awaiting-staff/")}[page]
    for role in ROLES:
        assert signed_in(role, f"{role}-{page}").get(url).status_code == 200, role
    assert Client().get(url).status_code == 302  # signed out: to the login page


def test_nobody_adds_edits_or_deletes_an_order_by_hand(make_product):
    order = paid_order(shop(make_product))
    owner = signed_in("owner")
    assert owner.get(admin_url("orders/order/add/")).status_code == 403
    assert owner.post(admin_url(f"orders/order/{order.pk}/delete/"), {"post": "yes"}).status_code == 403
    owner.post(detail_url(order), {"email": "thief@example.com", "status": "refunded"})
    order.refresh_from_db()
    assert (order.email, order.status) == ("buyer0@example.com", "fulfilled")
    assert "delete_selected" not in texts(owner.get(admin_url("orders/order/")))


def test_the_list_shows_the_columns(make_product):
    order = paid_order(shop(make_product), quantity=2)
    page = texts(signed_in("support").get(admin_url("orders/order/")))
    for text in (order.order_no, "Gift card", f"{order.amount} {order.currency}", "fulfilled", "b***@example.com"):
        assert text in page


@pytest.mark.parametrize("field", ["order_no", "email", "gateway_ref", "trade_no"])
def test_search_finds_an_order_by(make_product, field):
    # given two paid orders
    product = shop(make_product)
    wanted = paid_order(product, trade_no="TRADE-WANTED", email="wanted@example.com")
    other = paid_order(product, trade_no="TRADE-OTHER", email="other@example.com")
    Order.objects.filter(pk=wanted.pk).update(gateway_ref="REF-WANTED")
    Order.objects.filter(pk=other.pk).update(gateway_ref="REF-OTHER")
    term = {"order_no": wanted.order_no, "email": "wanted@example.com", "gateway_ref": "REF-WANTED",
            "trade_no": "TRADE-WANTED"}[field]
    # when
    page = texts(signed_in("support").get(admin_url("orders/order/"), {"q": term}))
    # then
    assert wanted.order_no in page and other.order_no not in page


@pytest.mark.parametrize("query,finds", [
    ({"status__exact": "awaiting_stock"}, "short"),
    ({"gateway": "epay"}, "other_gateway"),
    ({"product__id__exact": "OTHER_PRODUCT"}, "other_product"),
    ({"created_at__gte": "OLD_FROM", "created_at__lt": "OLD_UNTIL"}, "old"),
])
def test_filters_narrow_the_list(make_product, query, finds):
    product = shop(make_product, keys=PLAIN[:3])
    (short,) = make_orders(product, [3])  # created while 3 keys are in stock
    orders = {"paid": paid_order(product)}
    orders["short"] = pay(short)  # paid when only 2 are left
    orders["other_gateway"] = make_orders(product, [1], gateway="epay")[0]
    second = make_product("second", name="Second product")
    add_keys(second, ["SECOND-1"])
    orders["other_product"] = make_orders(second, [1])[0]
    clock.travel(timedelta(days=-40))
    try:
        orders["old"] = make_orders(product, [1])[0]
    finally:
        clock.travel(None)
    day = timezone.localtime(orders["old"].created_at).date()  # the list's days are the shop's (TIME_ZONE)
    midnight = timezone.make_aware(datetime.combine(day, time()))
    values = {"OTHER_PRODUCT": str(orders["other_product"].product_id), "OLD_FROM": str(midnight),
              "OLD_UNTIL": str(midnight + timedelta(days=1))}
    page = texts(signed_in("operator").get(admin_url("orders/order/"), {k: values.get(v, v) for k, v in query.items()}))
    shown = {name for name, order in orders.items() if order.order_no in page}
    assert shown == {finds}
    assert orders["short"].status == "awaiting_stock"


def test_the_date_drill_down_is_there_where_the_database_can_group_by_day(make_product):
    from kami.backoffice.admin.readonly import _dates_by_zone

    paid_order(shop(make_product))
    page = texts(signed_in("operator").get(admin_url("orders/order/")))
    # MySQL/MariaDB without time zone tables cannot: the list keeps the date filter alone
    assert ('class="toplinks"' in page) == _dates_by_zone()
    assert "created_at__gte" in page


def test_the_timeline_has_events_payments_notifications_and_deliveries(make_product):
    # given a paid order whose key email failed once
    order = paid_order(shop(make_product), trade_no="TRADE-TL")
    delivery = OutboxMessage.objects.get(dedupe_key=f"order_keys:{order.pk}:email")
    OutboxMessage.objects.filter(pk=delivery.pk).update(status="failed", attempts=1,
                                                        last_error="SMTP 451: mailbox busy")
    DeliveryAttempt.objects.create(message=delivery, at=clock.now(), ok=False, error="SMTP 451: mailbox busy",
                                   worker="w1")
    # when an operator opens it
    page = texts(signed_in("operator").get(detail_url(order)))
    # then every source is on it, in time order
    notification = Notification.objects.get(trade_no="TRADE-TL")
    assert notification.result == "fulfilled"
    expected = ["payment sandbox TRADE-TL", "notification from sandbox: fulfilled",
                f"delivery #{delivery.pk} order_keys: failed", f"delivery #{delivery.pk} attempt: failed",
                "SMTP 451: mailbox busy"]
    for text in expected:
        assert text in page, text
    assert "entry-event" in page and "fulfilled" in page
    assert page.index("notification from sandbox") < page.index(f"delivery #{delivery.pk} attempt")


def test_the_timeline_never_shows_a_notification_body(make_product):
    order = paid_order(shop(make_product))
    notification = Notification.objects.get(order_no=order.order_no)
    Notification.objects.filter(pk=notification.pk).update(body='{"secret_field": "BODY-MARKER"}',
                                                             headers={"X-Marker": "HEADER-MARKER"})
    page = texts(signed_in("owner").get(detail_url(order)))
    assert "BODY-MARKER" not in page and "HEADER-MARKER" not in page
    assert "notification from sandbox" in page


def test_support_reads_the_whole_order_but_acts_only_by_resending(make_product):
    # support reads orders in full (keys by fingerprint prefix, notifications), as buyers' questions need
    order = paid_order(shop(make_product))
    page = texts(signed_in("support").get(detail_url(order)))
    assert order.order_no in page and "payment sandbox" in page and "order_keys" in page
    assert 'id="order-keys"' in page and "notification from" in page
    assert 'id="form-resend"' in page and 'id="form-refund"' not in page and 'id="form-replace"' not in page


def test_keys_show_by_fingerprint_prefix(make_product):
    order = paid_order(shop(make_product), quantity=2)
    page = texts(signed_in("operator").get(detail_url(order)))
    for link in OrderKey.objects.filter(order=order).select_related("key"):
        assert link.key.fingerprint[:8] in page and link.key.fingerprint not in page


def test_no_key_plaintext_on_any_order_page(make_product):
    # given orders holding keys, one refunded and one flagged, and one awaiting stock
    product = shop(make_product)
    (short,) = make_orders(product, [3])
    orders = [paid_order(product, quantity=2), paid_order(product), pay(short)]
    assert orders[2].status == "awaiting_stock"
    owner = signed_in("owner")
    owner.post(admin_url(f"orders/act/{orders[1].pk}/refund/"), {"reason": "test", "confirm": "yes"})
    pages = [owner.get(admin_url("orders/order/")), owner.get(admin_url("orders/awaiting-staff/")),
             owner.get(admin_url("orders/order/"), {"q": orders[0].order_no}),
             owner.post(admin_url(f"orders/act/{orders[0].pk}/refund/"), {"reason": "check"})]
    pages += [owner.get(detail_url(o)) for o in orders]
    # then
    for response in pages:
        assert response.status_code == 200
        assert not [key for key in PLAIN if key in texts(response)]
        assert "PLAIN-KEY" not in texts(response)


def test_awaiting_staff_lists_manual_and_short_orders_with_the_buyers_answers(make_product):
    # given a manual top-up paid, an order short of stock, and a fulfilled one
    product = shop(make_product, keys=PLAIN[:2])
    (short,) = make_orders(product, [2])
    topup = make_product("topup", name="Phone top-up", kind="manual", price=Decimal("50.00"), custom_fields=FIELDS)
    manual, _ = order_create(product=topup, quantity=1, email="m@example.com", gateway="sandbox",
                             custom_values={"phone": "13800000000"})
    sandbox_notify(Client(), order_no=manual.order_no, amount=str(manual.amount))
    done = paid_order(product)
    short = pay(short)
    # when
    page = texts(signed_in("support").get(admin_url("orders/awaiting-staff/")))
    # then
    assert manual.order_no in page and short.order_no in page and done.order_no not in page
    assert "Phone to top up: 13800000000" in page
    assert admin_url(f"orders/order/{manual.pk}/change/") in page
    detail = texts(signed_in("operator").get(detail_url(manual)))
    assert "Phone to top up" in detail and "13800000000" in detail and 'id="form-fulfil"' in detail


def test_the_list_links_to_the_awaiting_staff_page(make_product):
    page = texts(signed_in("support").get(admin_url("orders/order/")))
    assert admin_url("orders/awaiting-staff/") in page


def test_the_pages_speak_chinese_by_default(make_product):
    order = paid_order(shop(make_product), trade_no="TRADE-ZH")
    page = texts(signed_in("owner", language="zh-hans").get(detail_url(order)))
    assert "时间线" in page and "支付 sandbox TRADE-ZH" in page and "更换卡密" in page
    listing = texts(signed_in("support", "support-zh", language="zh-hans").get(admin_url("orders/order/")))
    assert "订单号" in listing and "待人工处理的订单" in listing
