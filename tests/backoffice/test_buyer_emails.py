"""Buyers' emails in the back office: whole for roles that may reveal keys (owners), masked for
the rest (operator, support). An order number and its full email are what the storefront's
lookup asks for; search by the full email still finds the order for every role."""
from __future__ import annotations

import pytest

from kami.backoffice.perms import email_mask
from kami.orders.services import order_create
from tests.backoffice.staffing import admin_url
from tests.backoffice.test_orders_pages import detail_url, paid_order, shop, signed_in, texts
from tests.sandbox_play import sandbox_notify

pytestmark = pytest.mark.django_db
EMAIL, MASKED = "alice@example.com", "a***@example.com"


def test_the_mask_keeps_the_first_letter_and_the_domain():
    assert email_mask("alice@example.com") == "a***@example.com"
    assert email_mask("x@qq.com") == "x***@qq.com"
    assert email_mask("") == "" and email_mask("no-at-sign") == "no-at-sign"


@pytest.mark.parametrize("role,whole", [("owner", True), ("operator", False), ("support", False)])
def test_order_pages_show_the_buyer_email_only_to_roles_with_key_access(client, make_product, role, whole):
    # given a paid order whose key email is queued, and a paid order awaiting stock, both Alice's
    order = paid_order(shop(make_product), email=EMAIL)
    topup = make_product("topup", name="Phone top-up", kind="manual")
    waiting, _ = order_create(product=topup, quantity=1, email=EMAIL, gateway="sandbox")
    assert sandbox_notify(client, order_no=waiting.order_no, amount=str(waiting.amount)).status_code == 200
    staff = signed_in(role, f"{role}-mask")
    # when the list, the detail page (with its delivery timeline), the queue of orders awaiting
    # staff and the delivery queue are read
    pages = {"list": admin_url("orders/order/"), "detail": detail_url(order),
             "awaiting": admin_url("orders/awaiting-staff/"), "deliveries": admin_url("deliveries/?tab=pending")}
    html = {name: texts(staff.get(url)) for name, url in pages.items()}
    # then each shows the email whole or masked, as the role allows
    for name, page in html.items():
        assert (EMAIL in page) is whole, name
        assert (MASKED in page) is not whole, name
    assert f"email → {MASKED if not whole else EMAIL}" in html["detail"]


@pytest.mark.parametrize("role", ["owner", "operator", "support"])
def test_search_by_the_full_email_finds_the_order_for_every_role(make_product, role):
    # given
    order = paid_order(shop(make_product), email=EMAIL)
    # when
    page = texts(signed_in(role, f"{role}-search").get(admin_url(f"orders/order/?q={EMAIL}")))
    # then the order is found; only the search box repeats what was typed
    assert order.order_no in page
    assert page.count(EMAIL) == 1 if role != "owner" else page.count(EMAIL) > 1
    assert (MASKED in page) is (role != "owner")


def test_the_refund_confirmation_masks_the_email_for_an_operator(make_product):
    order = paid_order(shop(make_product), email=EMAIL)
    page = texts(signed_in("operator", "op-refund").post(admin_url(f"orders/act/{order.pk}/refund/"), {"reason": "x"}))
    assert MASKED in page and EMAIL not in page
