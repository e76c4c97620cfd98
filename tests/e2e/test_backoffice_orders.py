"""An owner in a real browser (Debian's Chromium) runs after-sales on orders: signs in with the
password and a TOTP code, opens a fulfilled order, replaces a bad key and sees the new key's
fingerprint and the timeline entry; then refunds an order (sandbox gateway) through the confirm
step and sees it refunded. No key plaintext on any page; no Content-Security-Policy violation.
Screenshots: test-output/e2e/backoffice/orders-*.png."""
from __future__ import annotations


import pytest
from django.test import Client

from kami.orders.models import Order, OrderKey
from kami.stock.models import Key
from tests.backoffice.staffing import PASSWORD, admin_url, code_for, make_staff
from tests.factories import add_keys, make_orders
from tests.sandbox_play import enable_sandbox, sandbox_notify
from tests.e2e.chromium import BACKOFFICE_SHOTS as SHOTS

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.sqlite_only]

PLAIN = ["E2E-PLAIN-0001", "E2E-PLAIN-0002", "E2E-PLAIN-0003", "E2E-PLAIN-0004"]




def paid_order(product, quantity=1) -> Order:
    (order,) = make_orders(product, [quantity])
    assert sandbox_notify(Client(), order_no=order.order_no, amount=str(order.amount)).content == b"ok"
    order.refresh_from_db()
    return order


def no_plaintext(page) -> None:
    html = page.content()
    assert not [key for key in PLAIN if key in html]


def test_the_owner_replaces_a_key_and_refunds_an_order(browser, live_server, make_product):
    # given a shop with two fulfilled orders, a spare key, and an owner with an authenticator
    enable_sandbox()
    product = make_product("gift", name="Gift card")
    add_keys(product, PLAIN)
    replaced, refunded = paid_order(product, quantity=2), paid_order(product)
    old = OrderKey.objects.filter(order=replaced).select_related("key").order_by("position").first().key
    owner = make_staff("owner", "owner-orders")
    context = browser.new_context(locale="en-US", viewport={"width": 1280, "height": 900})
    page = context.new_page()
    refused: list[str] = []
    page.on("console", lambda m: refused.append(m.text) if "Content Security Policy" in m.text else None)
    SHOTS.mkdir(parents=True, exist_ok=True)
    # when the owner signs in with the password and the current code
    page.goto(live_server.url + admin_url())
    page.fill("input[name=username]", owner.get_username())
    page.fill("input[name=password]", PASSWORD)
    page.fill("input[name=otp_token]", code_for(owner))
    page.click("input[type=submit]")
    page.wait_for_selector("#user-tools")
    # and finds the order in the list by its number
    page.goto(live_server.url + admin_url("orders/order/"))
    page.fill("#searchbar", replaced.order_no)
    page.press("#searchbar", "Enter")
    page.screenshot(path=str(SHOTS / "orders-1-list.png"), full_page=True)
    no_plaintext(page)
    page.click(f"text={replaced.order_no}")
    page.wait_for_selector("#order-timeline")
    page.screenshot(path=str(SHOTS / "orders-2-detail.png"), full_page=True)
    assert old.fingerprint[:8] in page.inner_text("#order-keys")
    no_plaintext(page)
    # and replaces its first key
    page.select_option("#replace-key", str(old.pk))
    page.fill("#replace-reason", "buyer reports the key is rejected")
    page.click("#form-replace button[type=submit]")
    page.wait_for_selector(".messagelist .success")
    page.screenshot(path=str(SHOTS / "orders-3-replaced.png"), full_page=True)
    # then the new key's fingerprint is on the order and the timeline says what happened
    new = OrderKey.objects.get(order=replaced, position=old_position(replaced, old)).key
    assert new.pk != old.pk and Key.objects.get(pk=old.pk).status == "void"
    assert new.fingerprint[:8] in page.inner_text("#order-keys")
    timeline = page.inner_text("#order-timeline")
    assert "key_replaced" in timeline and "buyer reports the key is rejected" in timeline
    assert f"new_fingerprint: {new.fingerprint[:8]}" in timeline
    no_plaintext(page)
    # when the owner refunds the other order, confirming on the second page
    page.goto(live_server.url + admin_url(f"orders/order/{refunded.pk}/change/"))
    page.fill("#refund-reason-first", "buyer changed their mind")
    page.click("#form-refund button[type=submit]")
    page.wait_for_selector("#refund-confirm")
    page.screenshot(path=str(SHOTS / "orders-4-refund-confirm.png"), full_page=True)
    assert Order.objects.get(pk=refunded.pk).status == "fulfilled"  # asking changed nothing
    page.click("#refund-confirm-button")
    page.wait_for_selector(".messagelist .success")
    page.screenshot(path=str(SHOTS / "orders-5-refunded.png"), full_page=True)
    # then it is refunded, through the sandbox gateway, and the timeline shows it
    assert page.get_attribute("#order-status", "data-status") == "refunded"
    assert f"SBX-R{refunded.order_no}" in page.inner_text(".messagelist")
    assert "refunded" in page.inner_text("#order-timeline")
    assert Order.objects.get(pk=refunded.pk).status == "refunded"
    no_plaintext(page)
    assert refused == []
    context.close()


def old_position(order, key) -> int:
    return order.events.get(kind="key_replaced", detail__old_key=key.pk).detail["position"]
