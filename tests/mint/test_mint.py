"""A dynamic product's keys minted by the merchant's URL (issue 14): success, a slow answer, a 500
then success, malformed answers until a person is alerted, and duplicate calls and answers that
never give an item two keys. Real database, real HTTP to a loopback merchant verifying our
signature with `standardwebhooks`, the delivery worker run pass by pass, a real SMTP server."""
from __future__ import annotations

import threading

import pytest
from django.db import connection

from kami.catalog.models import Product
from kami.delivery.links import order_link_signature
from kami.delivery.models import OutboxMessage
from kami.delivery.services import delivery_retry_now
from kami.core.errors import BadInput
from kami.fulfilment.flag import order_flag, order_unflag
from kami.fulfilment.manual import order_fulfil_manually
from kami.fulfilment.mint.channel import SET_ASIDE_RECHECK_SECONDS, MintChannel
from kami.fulfilment.mint.service import mint_store
from kami.fulfilment.refund import order_refund
from kami.orders.models import Order, OrderEvent, OrderKey
from kami.orders.selectors import order_keys_plaintext
from kami.stock.models import Key
from tests.mint.conftest import later, mint_row, work

pytestmark = pytest.mark.django_db(transaction=True)


def keys_of(order) -> list[str]:
    return [k.reveal() for k in order_keys_plaintext(order=Order.objects.get(pk=order.pk))]


def events(order) -> list[str]:
    return list(OrderEvent.objects.filter(order_id=order.pk).order_by("id").values_list("kind", flat=True))


def test_a_paid_order_gets_minted_keys_on_its_page_and_by_email(dynamic, pay, merchant, client, smtp):
    # given a paid order of two
    order = pay(dynamic, quantity=2)
    # then it waits for its mint, queued with the payment
    assert order.status == "awaiting_stock" and "awaiting_mint" in events(order)
    row = mint_row()
    port = merchant.base_url.rsplit(":")[-1]
    assert (row.channel, row.status, row.target) == ("mint", "pending", f"127.0.0.1:{port}")  # the host only
    # when the worker runs (the mint), then again (the email it queued)
    work()
    work()
    # then the merchant was called once, signed (standardwebhooks verified it), one idempotency key per item
    assert merchant.rejected == [] and len(merchant.calls) == 1
    data = merchant.calls[0]["data"]
    assert (data["order_no"], data["product"], data["quantity"]) == (order.order_no, "game-card", 2)
    assert [i["idempotency_key"] for i in data["items"]] == [f"{order.order_no}:1", f"{order.order_no}:2"]
    assert merchant.headers[0]["idempotency-key"] == order.order_no
    assert merchant.headers[0]["webhook-id"] == f"mint_{order.order_no}"
    minted = [merchant.minted[f"{order.order_no}:{n}"] for n in (1, 2)]
    # and the order is fulfilled with exactly those keys, stored sealed like imported ones
    assert Order.objects.get(pk=order.pk).status == "fulfilled" and keys_of(order) == minted
    stored = Key.objects.filter(product=dynamic)
    assert [k.status for k in stored] == ["sold", "sold"] and all(m.encode() not in bytes(k.ciphertext)
                                                                  for k in stored for m in minted)
    assert mint_row().status == "sent"
    # and shown on the order page, and emailed
    page = client.get(f"/orders/{order.order_no}?sig={order_link_signature(order.order_no)}").content.decode()
    assert all(key in page for key in minted)
    [mail] = smtp.to("buyer@example.com")
    assert all(key in mail.get_body(("plain",)).get_content() for key in minted)


def test_a_slow_merchant_times_out_and_the_retry_gets_the_same_keys(dynamic, pay, merchant):
    # given a merchant that answers after the timeout once (it mints the keys anyway)
    merchant.script = ["slow"]
    order = pay(dynamic)
    # when
    work()
    # then the attempt failed on the timeout and a retry is planned; the order waits
    row = mint_row()
    assert row.status == "failed" and "Timeout" in row.last_error and row.attempts == 1
    assert "s3cr3t" not in row.last_error  # only the host is ever shown
    assert Order.objects.get(pk=order.pk).status == "awaiting_stock"
    # when the retry comes
    later()
    work()
    # then the same idempotency key was sent again and its one key delivered
    assert [c["data"]["items"][0]["idempotency_key"] for c in merchant.calls] == [f"{order.order_no}:1"] * 2
    assert keys_of(order) == [merchant.minted[f"{order.order_no}:1"]]
    assert Key.objects.filter(product=dynamic).count() == 1


def test_a_500_then_success(dynamic, pay, merchant):
    merchant.script = [500]
    order = pay(dynamic, quantity=3)
    work()
    row = mint_row()
    assert row.status == "failed" and "HTTP 500" in row.last_error
    later()
    work()
    assert Order.objects.get(pk=order.pk).status == "fulfilled" and len(keys_of(order)) == 3
    assert mint_row().status == "sent" and mint_row().attempts == 2


def test_malformed_answers_are_retried_then_a_person_is_alerted_and_can_deliver(dynamic, pay, merchant):
    # given a merchant whose every answer is wrong: too few keys, not strings, a control character, not JSON
    merchant.script = [{"keys": ["ONE-ONLY"]}, {"keys": [1, 2]}, {"keys": ["GOOD-1", "BAD\x07-2"]}, b"<html>oops"]
    order = pay(dynamic, quantity=2)
    # when the worker tries all four attempts (the quick schedule)
    errors = []
    for _ in range(4):
        work()
        errors.append(mint_row().last_error)
        later()
    # then each answer was refused with what was wrong, and no key text
    assert "answer has 1 key(s) for 2 item(s)" in errors[0]
    assert "key 1 is int, not a string" in errors[1]
    assert "key 2 contains control character U+0007" in errors[2] and "GOOD-1" not in errors[2]
    assert "answer is not JSON" in errors[3]
    # and the order waits, paid, with nothing stored; the merchant is alerted
    row = mint_row()
    assert row.status == "manual" and row.attempts == 4
    order.refresh_from_db()
    assert order.status == "awaiting_stock" and "mint_failed" in events(order)
    assert not Key.objects.filter(product=dynamic).exists()
    alert = OutboxMessage.objects.get(kind="admin_alert")
    assert order.order_no in alert.payload["subject"] and f"#{row.id}" in alert.payload["body"]
    # and a person can deliver it by hand
    order_fulfil_manually(order_no=order.order_no, contents=["HAND-1", "HAND-2"], actor="staff")
    assert keys_of(order) == ["HAND-1", "HAND-2"]


def test_two_calls_at_once_give_each_item_one_key(dynamic, pay, merchant, settings):
    # given two workers performing the same mint at the same time (a lease ran out mid-call):
    # both calls reach the merchant before either answer is stored
    settings.KAMI_MINT_TIMEOUT_SECONDS = 5
    merchant.script, merchant.slow_seconds = ["slow", "slow"], 0.5
    order = pay(dynamic, quantity=2)
    row = mint_row()
    failures = []

    def perform():
        try:
            MintChannel().send(row)
        except Exception as exc:  # noqa: BLE001 — recorded, asserted below
            failures.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=perform) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # then the merchant answered both (its idempotency gave the same keys), and one answer was stored
    assert failures == [] and len(merchant.calls) == 2
    assert Order.objects.get(pk=order.pk).status == "fulfilled"
    assert OrderKey.objects.filter(order=order).count() == 2 and Key.objects.filter(product=dynamic).count() == 2
    # and a third call, later, finds the order fulfilled and does not call the merchant at all
    MintChannel().send(row)
    assert len(merchant.calls) == 2


def test_a_second_answer_with_other_keys_stores_nothing(dynamic, pay):
    # given a mint answered once (a merchant that is not idempotent answers again with other keys)
    order = pay(dynamic, quantity=2)
    assert mint_store(order_id=order.pk, keys=["FIRST-1", "FIRST-2"]) is True
    # when the second answer arrives
    assert mint_store(order_id=order.pk, keys=["SECOND-1", "SECOND-2"]) is False
    # then each item still has its one key, and the second answer's keys are nowhere
    assert keys_of(order) == ["FIRST-1", "FIRST-2"] and Key.objects.filter(product=dynamic).count() == 2


def test_a_key_the_merchant_already_gave_another_order_is_refused_and_retried(dynamic, pay, merchant):
    # given one order fulfilled with a key, and a merchant that answers the next order with the same key
    first = pay(dynamic)
    work()
    merchant.script = [{"keys": [keys_of(first)[0]]}]
    second = pay(dynamic)
    # when
    work()
    # then a key is sold once: nothing stored for the second order, and the call is retried
    row = OutboxMessage.objects.filter(kind="mint_keys").order_by("id").last()
    assert row.status == "failed" and "already in game-card's stock or sold" in row.last_error
    assert Order.objects.get(pk=second.pk).status == "awaiting_stock" and Key.objects.count() == 1
    later()
    work()
    assert Order.objects.get(pk=second.pk).status == "fulfilled" and keys_of(second) != keys_of(first)


def test_a_refunded_order_is_not_minted(dynamic, pay, merchant):
    order = pay(dynamic)
    order_refund(order_no=order.order_no, actor="staff")
    work()
    assert merchant.calls == [] and mint_row().status == "sent"
    assert not Key.objects.filter(product=dynamic).exists()


def test_a_product_without_a_mint_url_alerts_at_once(make_product, pay):
    product = make_product("no-url", kind="dynamic")
    order = pay(product)
    work()
    row = mint_row()
    assert row.status == "manual" and "kami product set no-url mint_url=" in row.last_error
    assert Order.objects.get(pk=order.pk).status == "awaiting_stock"
    assert OutboxMessage.objects.filter(kind="admin_alert").count() == 1
    assert Product.objects.get(pk=product.pk).needs_keys is False


def test_a_flagged_order_is_minted_only_once_unflagged(dynamic, pay, merchant):
    # given a waiting order that staff set aside for review before its mint ran
    order = pay(dynamic)
    order_flag(order_no=order.order_no, reason="looks like fraud", actor="staff")
    # when the worker comes to its mint
    work()
    # then the merchant is not called, and the mint waits without spending an attempt
    row = mint_row()
    assert merchant.calls == [] and (row.status, row.attempts) == ("pending", 0)
    # when staff unflag it, and the mint looks again
    order_unflag(order_no=order.order_no, actor="staff")
    later(SET_ASIDE_RECHECK_SECONDS + 1)
    work()
    # then it is minted
    assert Order.objects.get(pk=order.pk).status == "fulfilled" and len(merchant.calls) == 1


def test_a_key_delivered_by_hand_is_checked_against_the_minted_ones(dynamic, pay, merchant):
    # given one order fulfilled by the mint, another whose mint gave up
    first = pay(dynamic)
    work()
    merchant.script = [500] * 4
    second = pay(dynamic)
    for _ in range(4):
        work()
        later()
    assert OutboxMessage.objects.filter(kind="mint_keys").order_by("id").last().status == "manual"
    # when staff type in the first order's key for the second
    with pytest.raises(BadInput) as caught:
        order_fulfil_manually(order_no=second.order_no, contents=keys_of(first), actor="staff")
    # then it is refused: a key is sold once
    assert "already in game-card's stock, sold" in str(caught.value)


def test_after_the_merchant_is_fixed_a_retry_from_the_delivery_queue_mints(dynamic, pay, merchant):
    # given a mint that ran out of attempts (the merchant's system was down)
    merchant.script = [503] * 4
    order = pay(dynamic, quantity=2)
    for _ in range(4):
        work()
        later()
    row = mint_row()
    assert row.status == "manual"
    # when the merchant is fixed and staff retry the delivery
    delivery_retry_now(message_id=row.pk, actor="staff")
    work()
    # then the same idempotency keys went again and the order is fulfilled, with one alert in all
    assert {c["data"]["items"][1]["idempotency_key"] for c in merchant.calls} == {f"{order.order_no}:2"}
    assert Order.objects.get(pk=order.pk).status == "fulfilled" and len(keys_of(order)) == 2
    assert OutboxMessage.objects.filter(kind="admin_alert").count() == 1


def test_an_order_flagged_during_the_call_is_minted_again_once_unflagged(dynamic, pay, merchant, settings):
    # given a merchant that takes a moment, and staff who flag the order while it mints
    settings.KAMI_MINT_TIMEOUT_SECONDS = 5
    merchant.script, merchant.slow_seconds = ["slow"], 0.5
    order = pay(dynamic)
    worker = threading.Thread(target=lambda: (work(), connection.close()))
    worker.start()
    while not merchant.calls:
        threading.Event().wait(0.01)
    order_flag(order_no=order.order_no, reason="check the buyer", actor="staff")
    worker.join()
    # then the answer was not stored and the mint waits, no attempt spent
    row = mint_row()
    assert not Key.objects.filter(product=dynamic).exists() and (row.status, row.attempts) == ("pending", 0)
    # when staff unflag it and the mint looks again
    order_unflag(order_no=order.order_no, actor="staff")
    later(SET_ASIDE_RECHECK_SECONDS + 1)
    work()
    # then the same item got its key
    assert keys_of(order) == [merchant.minted[f"{order.order_no}:1"]] and len(merchant.calls) == 2
