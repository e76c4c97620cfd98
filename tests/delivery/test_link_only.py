"""A product can keep keys out of mailboxes ("link only"): the email then carries the order link
and the usage instructions, never the keys; the order page shows keys and instructions."""
from __future__ import annotations

import pytest
from django.test import Client

from kami.delivery.links import order_link_signature
from kami.delivery.worker import run_once
from tests.factories import add_keys, make_orders
from tests.sandbox_play import enable_sandbox, sandbox_notify

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.mark.parametrize("email_keys", [True, False])
def test_the_email_carries_keys_unless_the_product_says_link_only(make_product, mailoutbox, email_keys):
    # given
    enable_sandbox()
    product = make_product(name="Office licence")
    product.instructions, product.email_keys = "Open Office → Account → Activate.", email_keys
    product.save()
    add_keys(product, ["OFFICE-KEY-1"])
    (order,) = make_orders(product, [1])
    client = Client()
    sandbox_notify(client, order_no=order.order_no, amount=str(order.amount))
    # when
    run_once(worker_id="link-only-test")
    # then
    (mail,) = [m for m in mailoutbox if order.order_no in m.subject]
    html = mail.alternatives[0][0]
    assert ("OFFICE-KEY-1" in mail.body) is email_keys and ("OFFICE-KEY-1" in html) is email_keys
    assert order_link_signature(order.order_no) in mail.body and "Activate" in mail.body and "Activate" in html
    page = client.get(f"/orders/{order.order_no}?sig={order_link_signature(order.order_no)}").content.decode()
    assert "OFFICE-KEY-1" in page and "Activate" in page
