"""A buyer finds an order again in a real browser: by email + lookup password (the key behind
the listed link) and by order number + email (a link sent to the order's email, none on the
page); a wrong password gets the generic answer and no key."""
from __future__ import annotations

import re

import pytest
from django.core import mail
from django.core.cache import cache
from django.test import Client

from kami.delivery.models import OutboxMessage
from kami.delivery.worker import run_once
from kami.stock.services import keys_generate
from tests.e2e.test_buy_in_browser import KEY
from tests.sandbox_play import enable_sandbox, sandbox_notify

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.sqlite_only]


def test_a_buyer_looks_up_the_order_and_sees_the_key(browser, live_server, settings, make_product):  # noqa: F811
    # given an order paid in the sandbox, bought through the API with a lookup password
    settings.KAMI_BASE_URL = live_server.url
    cache.clear()
    enable_sandbox()
    product = make_product("gift-card", name="Gift card 100")
    keys_generate(product=product, count=1, actor="test")
    api = Client()
    created = api.post("/api/v1/orders", {"product": product.slug, "quantity": 1, "email": "buyer@example.com",
                                          "gateway": "sandbox", "lookup_password": "open-sesame"},
                       content_type="application/json").json()
    assert sandbox_notify(api, order_no=created["order_no"], amount=created["amount"]).status_code == 200
    page = browser.new_context(locale="en-US").new_page()
    # when the buyer gives a wrong password
    page.goto(live_server.url + "/lookup")
    page.fill("#lookup-by-password input[name=email]", "buyer@example.com")
    page.fill("#lookup-by-password input[name=password]", "not-the-password")
    page.click("#lookup-by-password button[type=submit]")
    # then only the generic answer
    assert "No order matches these details" in page.inner_text("#lookup-message")
    assert page.locator("code.key").count() == 0
    # when the buyer gives the right one and follows the listed order
    page.fill("#lookup-by-password input[name=email]", "buyer@example.com")
    page.fill("#lookup-by-password input[name=password]", "open-sesame")
    page.click("#lookup-by-password button[type=submit]")
    page.click(f"ol.found a:has-text('{created['order_no']}')")
    # then the key is shown
    page.wait_for_selector("code.key")
    key = page.inner_text("code.key").strip()
    assert KEY.match(key)
    # and by order number + email: the page shows no key, the link arrives by email and opens it
    mail.outbox.clear()
    page.goto(live_server.url + "/lookup")
    page.fill("#lookup-by-number input[name=order_no]", created["order_no"])
    page.fill("#lookup-by-number input[name=email]", "buyer@example.com")
    page.click("#lookup-by-number button[type=submit]")
    assert "we have sent a link to it to that email address" in page.inner_text("#lookup-message")
    assert page.locator("code.key").count() == 0
    run_once("lookup-e2e")
    link_ids = set(OutboxMessage.objects.filter(kind="order_link").values_list("message_id", flat=True))
    [sent] = [m for m in mail.outbox if m.extra_headers.get("Message-ID") in link_ids]
    page.goto(re.search(r"https?://\S+/orders/\S+", sent.body).group(0))
    page.wait_for_selector("code.key")
    assert page.inner_text("code.key").strip() == key
