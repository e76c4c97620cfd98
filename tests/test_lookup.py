"""Order lookup (/lookup): order number + email emails a fresh link to the order's address (the
page never shows it), email + lookup password lists the orders with their links. Every miss is
the same answer; attempts are limited per IP and per email; a request that cannot match costs no
password hashing; signed links expire."""
from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.contrib.auth.hashers import MD5PasswordHasher
from django.core import mail
from django.core.cache import cache
from django.test import Client

from kami.core import clock
from kami.delivery.links import order_link_signature
from kami.delivery.models import OutboxMessage
from kami.delivery.worker import run_once
from kami.orders.models import Order
from kami.orders.selectors import LOOKUP_MAX_ORDERS
from kami.orders.services import order_create
from tests.factories import add_keys
from tests.sandbox_play import enable_sandbox, sandbox_notify

pytestmark = pytest.mark.django_db
CSRF = re.compile(rb'name="csrfmiddlewaretoken" value="[^"]*"')
LINK = re.compile(r"https?://\S+/orders/\S+")


class CountingHasher(MD5PasswordHasher):
    """The test hasher, counting how many password checks a request makes."""

    checks = 0

    def verify(self, password, encoded):
        type(self).checks += 1
        return super().verify(password, encoded)


@pytest.fixture
def counting_hasher(settings):
    settings.PASSWORD_HASHERS = ["tests.test_lookup.CountingHasher"]
    CountingHasher.checks = 0
    return CountingHasher


@pytest.fixture(autouse=True)
def fresh_counters():
    cache.clear()
    yield
    cache.clear()
    clock.travel(None)


def paid_order(client, product, *, email="buyer@example.com", lookup_password="open-sesame") -> dict:
    body = {"product": product.slug, "quantity": 1, "email": email, "gateway": "sandbox"}
    if lookup_password:
        body["lookup_password"] = lookup_password
    created = client.post("/api/v1/orders", body, content_type="application/json")
    assert created.status_code == 201, created.content
    data = created.json()
    assert sandbox_notify(client, order_no=data["order_no"], amount=data["amount"]).status_code == 200
    return data


def shop(make_product, keys=("LOOKUP-KEY-1",)):
    enable_sandbox()
    product = make_product(name="Gift card")
    add_keys(product, list(keys))
    return product


def miss_body(response) -> bytes:
    return CSRF.sub(b"", response.content)  # the masked CSRF token differs on every page


def link_emails() -> list:
    """The lookup's link emails the worker sends now (not the key emails of the orders)."""
    run_once("lookup-test")
    ids = set(OutboxMessage.objects.filter(kind="order_link").values_list("message_id", flat=True))
    return [m for m in mail.outbox if m.extra_headers.get("Message-ID") in ids]


@pytest.mark.django_db(transaction=True)
def test_order_number_and_email_send_a_link_to_the_order_email_and_show_nothing(client, make_product):
    # given
    product = shop(make_product)
    order = paid_order(client, product, lookup_password="")
    mail.outbox.clear()
    # when someone who knows the number and the email (a staff member, say) asks
    answer = client.post("/lookup", {"order_no": order["order_no"], "email": "  BUYER@example.com "},
                         HTTP_ACCEPT_LANGUAGE="en")
    # then the page holds no key and no link: only that a link went to the order's email
    html = answer.content.decode()
    assert answer.status_code == 200 and answer["Cache-Control"] == "no-store"
    assert "LOOKUP-KEY-1" not in html and "sig=" not in html and not re.search(r"/orders/(?!recent\b)", html)
    assert "we have sent a link to it to that email address" in html
    # and the link is in the buyer's mailbox, and it opens the keys
    [sent] = link_emails()
    assert sent.to == ["buyer@example.com"] and order["order_no"] in sent.subject
    link = LINK.search(sent.body).group(0)
    assert "LOOKUP-KEY-1" in client.get(link).content.decode()


@pytest.mark.django_db(transaction=True)
def test_the_link_email_is_in_the_buyers_language_and_queued_once_per_window(client, make_product):
    # given an order placed in Chinese
    product = shop(make_product)
    created, _ = order_create(product=product, quantity=1, email="buyer@example.com", gateway="sandbox",
                              locale="zh-hans")
    mail.outbox.clear()
    # when the lookup is asked three times
    for _ in range(3):
        client.post("/lookup", {"order_no": created.order_no, "email": "buyer@example.com"}, HTTP_ACCEPT_LANGUAGE="en")
    # then one email, in Chinese, and the order's history shows it
    [sent] = link_emails()
    assert "订单" in sent.subject and "链接" in sent.body
    assert OutboxMessage.objects.filter(kind="order_link").count() == 1
    assert created.events.filter(kind="link_sent").count() == 1


@pytest.mark.django_db(transaction=True)
def test_a_miss_by_number_gets_the_same_page_as_a_hit_and_sends_nothing(client, make_product):
    # given
    product = shop(make_product, keys=("K-1", "K-2"))
    order = paid_order(client, product)
    mail.outbox.clear()
    # when
    hit = client.post("/lookup", {"order_no": order["order_no"], "email": "buyer@example.com"})
    misses = [client.post("/lookup", {"order_no": order["order_no"], "email": "other@example.com"}),
              client.post("/lookup", {"order_no": "999999999999999999", "email": "buyer@example.com"})]
    # then
    assert {m.status_code for m in [hit, *misses]} == {200}
    assert {miss_body(m) for m in misses} == {miss_body(hit)}
    assert [m.to for m in link_emails()] == [["buyer@example.com"]]


def test_email_and_password_list_the_order_and_its_link_shows_the_keys(client, make_product):
    # given
    product = shop(make_product)
    order = paid_order(client, product)
    # when
    found = client.post("/lookup", {"email": "buyer@example.com", "password": "open-sesame"})
    # then
    assert found.status_code == 200 and found["Cache-Control"] == "no-store"
    html = found.content.decode()
    assert order["order_no"] in html and "LOOKUP-KEY-1" not in html  # a list of links, not keys
    link = re.search(r'<ol class="found">.*?href="([^"]*/orders/[^"]+)"', html, re.S).group(1).replace("&amp;", "&")
    assert "LOOKUP-KEY-1" in client.get(link).content.decode()


def test_every_password_miss_gets_the_same_answer(client, make_product):
    # given an order with a lookup password, and another buyer's order without one
    product = shop(make_product, keys=("K-1", "K-2"))
    paid_order(client, product)
    paid_order(client, product, email="nopass@example.com", lookup_password="")
    # when
    misses = [
        client.post("/lookup", {"email": "buyer@example.com", "password": "wrong-password"}),
        client.post("/lookup", {"email": "nobody@example.com", "password": "open-sesame"}),
        client.post("/lookup", {"email": "nopass@example.com", "password": "open-sesame"}),
    ]
    # then
    assert {m.status_code for m in misses} == {200}
    assert len({miss_body(m) for m in misses}) == 1
    html = misses[0].content.decode()
    assert "没有与这些信息相符的订单" in html and "K-1" not in html and not re.search(r"/orders/(?!recent\b)", html)


def test_the_miss_is_translated(client):
    response = client.post("/lookup", {"email": "nobody@example.com", "password": "xxxxxxxx"}, HTTP_ACCEPT_LANGUAGE="zh-CN")
    assert "没有与这些信息相符的订单" in response.content.decode()


def test_an_expired_link_is_refused_and_points_to_the_lookup(client, make_product, settings):
    # given a link made now, and the days it works
    product = shop(make_product)
    order = paid_order(client, product)
    sig = order_link_signature(order["order_no"])
    # when the days have passed
    clock.travel(timedelta(days=settings.KAMI_ORDER_LINK_DAYS, hours=1))
    page = client.get(f"/orders/{order['order_no']}?sig={sig}", HTTP_ACCEPT_LANGUAGE="en")
    keys_txt = client.get(f"/orders/{order['order_no']}/keys.txt?sig={sig}")
    status = client.get(f"/orders/{order['order_no']}/status?sig={sig}")
    # then no key, and the page says what to do
    html = page.content.decode()
    assert page.status_code == 410 and "LOOKUP-KEY-1" not in html
    assert "This link has expired" in html and 'href="/lookup"' in html
    assert keys_txt.status_code == 404 and status.status_code == 404
    # while a day earlier it opened the keys
    clock.travel(timedelta(days=settings.KAMI_ORDER_LINK_DAYS - 1))
    assert "LOOKUP-KEY-1" in client.get(f"/orders/{order['order_no']}?sig={sig}").content.decode()


def test_a_link_from_before_links_expired_counts_as_expired(client, make_product):
    # given the old link format: a signature of the bare order number, valid for ever
    from django.core import signing

    product = shop(make_product)
    order = paid_order(client, product)
    old = signing.Signer(salt="order-link").signature(order["order_no"])
    # when / then
    page = client.get(f"/orders/{order['order_no']}?sig={old}")
    assert page.status_code == 410 and "LOOKUP-KEY-1" not in page.content.decode()
    forged = client.get(f"/orders/{order['order_no']}?sig=AAAA.{old}")
    assert forged.status_code == 404


def test_only_the_most_recent_matching_orders_are_listed(client, make_product, settings):
    # given more orders with the same email and password than a lookup checks, one minute apart
    settings.KAMI_PENDING_LIMIT_EMAIL = 0
    product = shop(make_product)
    orders = []
    for minute in range(LOOKUP_MAX_ORDERS + 2):
        clock.travel(timedelta(minutes=minute))
        orders.append(order_create(product=product, quantity=1, email="buyer@example.com", gateway="sandbox",
                                   lookup_password="open-sesame")[0])
    clock.travel(None)
    # when
    html = client.post("/lookup", {"email": "buyer@example.com", "password": "open-sesame"}).content.decode()
    # then
    listed = [o.order_no for o in orders if o.order_no in html]
    assert listed == [o.order_no for o in orders[2:]]


def test_lookup_is_limited_per_ip_and_resets_after_the_window(client, settings):
    # given
    settings.KAMI_LOOKUP_LIMIT_IP, settings.KAMI_LOOKUP_LIMIT_EMAIL = 3, 100
    # when
    answers = [client.post("/lookup", {"email": f"b{i}@example.com", "password": "xxxxxxxx"}).status_code
               for i in range(4)]
    other_ip = client.post("/lookup", {"email": "c@example.com", "password": "xxxxxxxx"}, REMOTE_ADDR="10.0.0.9")
    clock.travel(timedelta(seconds=settings.KAMI_LOOKUP_WINDOW_SECONDS))
    later = client.post("/lookup", {"email": "d@example.com", "password": "xxxxxxxx"})
    # then
    assert answers == [200, 200, 200, 429]
    assert other_ip.status_code == 200 and later.status_code == 200


def test_lookup_is_limited_per_email_across_ips_even_without_orders(client, settings):
    # given an email that never ordered
    settings.KAMI_LOOKUP_LIMIT_IP, settings.KAMI_LOOKUP_LIMIT_EMAIL = 100, 2
    # when
    answers = [client.post("/lookup", {"email": "Victim@example.com", "password": "xxxxxxxx"},
                           REMOTE_ADDR=f"10.0.0.{i}").status_code for i in range(3)]
    too_many = client.post("/lookup", {"email": "victim@example.com", "order_no": "1"}, REMOTE_ADDR="10.0.0.99",
                           HTTP_ACCEPT_LANGUAGE="en")
    other_email = client.post("/lookup", {"email": "other@example.com", "password": "xxxxxxxx"})
    # then
    assert answers == [200, 200, 429]
    assert too_many.status_code == 429 and "Too many attempts" in too_many.content.decode()
    assert other_email.status_code == 200


def test_over_the_limit_no_password_is_hashed(client, make_product, settings, counting_hasher):
    # given one attempt allowed per email, already used
    settings.KAMI_LOOKUP_LIMIT_IP, settings.KAMI_LOOKUP_LIMIT_EMAIL = 100, 1
    product = shop(make_product)
    paid_order(client, product)
    client.post("/lookup", {"email": "buyer@example.com", "password": "wrong-password"})
    counting_hasher.checks = 0
    # when
    refused = [client.post("/lookup", {"email": "buyer@example.com", "password": "open-sesame"},
                           REMOTE_ADDR=f"10.0.1.{i}") for i in range(5)]
    # then
    assert {r.status_code for r in refused} == {429}
    assert counting_hasher.checks == 0


def test_a_lookup_checks_at_most_a_few_password_hashes_hit_or_miss(client, make_product, settings, counting_hasher):
    # given more password orders for one email than a lookup checks
    settings.KAMI_PENDING_LIMIT_EMAIL = 0
    product = shop(make_product)
    for _ in range(LOOKUP_MAX_ORDERS + 3):
        order_create(product=product, quantity=1, email="buyer@example.com", gateway="sandbox",
                     lookup_password="open-sesame")
    costs = []
    # when a hit, a wrong password and an unknown email are looked up
    for email, password in (("buyer@example.com", "open-sesame"), ("buyer@example.com", "wrong-password"),
                            ("nobody@example.com", "open-sesame")):
        counting_hasher.checks = 0
        client.post("/lookup", {"email": email, "password": password})
        costs.append(counting_hasher.checks)
    # then each costs the same few checks
    assert LOOKUP_MAX_ORDERS <= 3 and costs == [LOOKUP_MAX_ORDERS] * 3


def test_requests_that_cannot_match_are_refused_before_any_hashing(client, counting_hasher):
    # when a short password, an over-long one, or no email at all is sent
    short = client.post("/lookup", {"email": "buyer@example.com", "password": "abcd"}, HTTP_ACCEPT_LANGUAGE="en")
    long = client.post("/lookup", {"email": "buyer@example.com", "password": "x" * 65})
    no_email = client.post("/lookup", {"email": "", "password": "open-sesame"})
    # then nothing is hashed, and the short password is told what to do
    assert counting_hasher.checks == 0
    assert short.status_code == 400 and "An order password has 8 to 64 characters" in short.content.decode()
    assert long.status_code == 400 and no_email.status_code == 200


def test_short_passwords_are_refused_with_the_message_in_chinese(client):
    response = client.post("/lookup", {"email": "buyer@example.com", "password": "abcd"}, HTTP_ACCEPT_LANGUAGE="zh-CN")
    assert "订单密码为 8 到 64 个字符" in response.content.decode()


def test_lookup_needs_the_csrf_token(make_product):
    client = Client(enforce_csrf_checks=True)
    assert client.get("/lookup").status_code == 200
    assert client.post("/lookup", {"email": "buyer@example.com", "password": "open-sesame"}).status_code == 403


def test_lookup_password_length_is_checked_at_checkout(client, make_product):
    # given
    product = shop(make_product)
    # when a 7-character password is chosen, through the API and on the product page
    api = client.post("/api/v1/orders", {"product": product.slug, "quantity": 1, "email": "b@example.com",
                                         "gateway": "sandbox", "lookup_password": "abcdefg"},
                      content_type="application/json", HTTP_ACCEPT_LANGUAGE="en")
    page = client.post(f"/buy/{product.slug}", {"quantity": 1, "email": "b@example.com", "gateway": "sandbox",
                                                  "lookup_password": "abcdefg"}, HTTP_ACCEPT_LANGUAGE="zh-CN")
    # then both are refused with the rule, and no order exists
    assert api.status_code == 400
    assert api.json()["fields"]["lookup_password"] == "The order password must be 8 to 64 characters, or left empty."
    assert page.status_code == 400 and "订单密码须为 8 到 64 个字符，或留空。" in page.content.decode()
    assert 'id="lookup-password-error"' in page.content.decode()
    assert not Order.objects.exists()


def test_lookup_password_is_stored_salted_and_slow_hashed(client, make_product):
    product = shop(make_product, keys=("K-1", "K-2"))
    paid_order(client, product)
    paid_order(client, product, email="b2@example.com")
    hashes = list(Order.objects.values_list("lookup_hash", flat=True))
    assert "open-sesame" not in "".join(hashes) and hashes[0] != hashes[1]
