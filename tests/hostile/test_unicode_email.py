"""Issue 12: a buyer's email is compared in the form mail is sent to. Checkout accepts a domain in
full-width letters or with a zero-width space (Django's validator reads it through IDNA) and the
keys go to the plain address, so the lookup, the per-email limits and the merchant API find the
order by the plain form too (kami.orders.models.email_normalise)."""
from __future__ import annotations

import pytest
from django.core.cache import cache

from kami.orders.models import Order, email_normalise
from kami.orders.selectors import orders_lookup
from tests.factories import add_keys
from tests.sandbox_play import enable_sandbox, sandbox_notify

pytestmark = [pytest.mark.django_db]
TYPED = ["Buyer@ＥＸＡＭＰＬＥ.com", "BUYER@example.COM", "buyer@ex\u200bample.com"]


@pytest.fixture
def product(make_product):
    cache.clear()
    enable_sandbox()
    product = make_product("gift", name="Gift card")
    add_keys(product, ["UNI-1", "UNI-2"])
    return product


def paid(client, email: str) -> dict:
    created = client.post("/api/v1/orders", {"product": "gift", "quantity": 1, "email": email, "gateway": "sandbox",
                                             "lookup_password": "open-sesame"}, content_type="application/json")
    assert created.status_code == 201, created.content
    body = created.json()
    assert sandbox_notify(client, order_no=body["order_no"], amount=body["amount"]).status_code == 200
    return body


@pytest.mark.parametrize("typed", TYPED)
def test_an_order_placed_with_a_variant_email_is_found_by_the_plain_one(client, product, typed):
    # given an order placed with the email typed in a variant form
    order = paid(client, typed)
    # when the buyer looks it up with the plain address and the order password
    found = client.post("/lookup", {"email": "buyer@example.com", "password": "open-sesame"})
    # then it is listed, and the number + email way finds it too
    assert found.status_code == 200 and order["order_no"] in found.content.decode()
    assert [o.order_no for o in orders_lookup(email="buyer@example.com", order_no=order["order_no"])] == [order["order_no"]]
    assert Order.objects.get().email_norm == "buyer@example.com"


def test_variant_forms_of_one_address_share_the_per_email_limit(client, product, settings):
    # given one unpaid order allowed per email
    settings.KAMI_PENDING_LIMIT_EMAIL = 1
    first = client.post("/api/v1/orders", {"product": "gift", "email": "buyer@example.com", "gateway": "sandbox"},
                        content_type="application/json")
    # when the same mailbox is typed in full-width letters
    second = client.post("/api/v1/orders", {"product": "gift", "email": "buyer@ｅｘａｍｐｌｅ.com", "gateway": "sandbox"},
                         content_type="application/json")
    # then it is the same buyer
    assert first.status_code == 201 and second.status_code == 400
    assert "email" in second.json()["fields"]


def test_a_full_width_local_part_is_refused_with_a_clear_message(client, product):
    response = client.post("/api/v1/orders", {"product": "gift", "email": "ＢＵＹＥＲ@example.com", "gateway": "sandbox"},
                           content_type="application/json")
    assert response.status_code == 400
    assert response.json()["fields"]["email"].startswith("a valid email address is required")
    assert not Order.objects.exists()


@pytest.mark.parametrize("email,normal", [
    ("buyer@bücher.de", "buyer@bücher.de"), ("a@", "a@"), ("no-at-sign", "no-at-sign"),
    ("b@" + "x" * 70 + ".com", "b@" + "x" * 70 + ".com"), ("B@EXAMPLE.COM.", "b@example.com.")])
def test_normalising_never_fails_and_keeps_real_unicode_domains(email, normal):
    assert email_normalise(email) == normal
