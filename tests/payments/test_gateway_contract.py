"""What every gateway must do with its notifications, whatever its protocol: a paid one is
applied once and acknowledged as the gateway expects; a forged, cut-off, wrong-merchant or
wrong-method one changes nothing; a wrong amount is flagged, not fulfilled; an unknown order is
recorded and acknowledged. Each gateway is played by tests/payments/players.py; its own test
module covers the rest of its protocol. A new gateway module gets a player, and this suite."""
from __future__ import annotations

import copy
import itertools
from decimal import Decimal

import pytest

from kami.fulfilment.notify import notification_handle
from kami.orders.models import Order, OrderKey
from kami.payments.models import Notification, Payment
from kami.payments.registry import GATEWAYS
from tests.factories import add_keys, make_orders
from tests.payments.paypal_play import fake_paypal  # noqa: F401 (fixture, asked for by the PayPal player)
from tests.payments.players import PLAYERS, Player

pytestmark = pytest.mark.django_db(transaction=True)
PRICE = Decimal("29.90")
_trades = itertools.count(1)


@pytest.fixture(params=sorted(PLAYERS))
def player(request) -> Player:
    playing = copy.copy(PLAYERS[request.param])
    playing.enable(request)
    return playing


def pending_order(make_product, player: Player, *, quantity: int = 1) -> Order:
    product = make_product(price=PRICE, currency=player.currency)
    add_keys(product, [f"KEY-{product.slug}-{i}" for i in range(3)])
    return make_orders(product, [quantity], gateway=player.name)[0]


def paid(player: Player, order: Order, **kwargs):
    kwargs.setdefault("amount", order.amount)
    return player.notification(order_no=order.order_no, trade_no=f"T{next(_trades):06d}{order.order_no[-8:]}", **kwargs)


def answer(response) -> tuple[int, bytes]:
    return response.status_code, response.content


def status_of(order: Order) -> str:
    return Order.objects.get(pk=order.pk).status


def test_every_gateway_module_has_a_player():
    # given / when / then: a gateway without a player would escape the contract
    assert sorted(PLAYERS) == sorted(GATEWAYS)


def test_a_paid_notification_fulfils_the_order_and_is_acknowledged_as_the_gateway_expects(client, make_product, player):
    # given
    order = pending_order(make_product, player, quantity=2)
    # when
    response = paid(player, order).send(client)
    # then
    assert answer(response) == player.ok
    assert status_of(order) == "fulfilled"
    assert OrderKey.objects.filter(order=order).count() == 2


@pytest.mark.parametrize("case", [str.lower, str.upper], ids=["lower", "upper"])
def test_header_names_are_read_in_any_case_from_plain_values(make_product, player, case):
    # given: the notification as an edge hands it over (no HttpRequest), header names re-cased
    order = pending_order(make_product, player)
    inbound = paid(player, order).inbound(case=case)
    # when
    reply = notification_handle(gateway_name=player.name, inbound=inbound)
    # then: taken exactly as through the notify view, and the sender kept
    assert (reply.status_code, reply.content) == player.ok
    assert status_of(order) == "fulfilled"
    assert Notification.objects.get().remote_addr == "192.0.2.10"


def test_a_forged_notification_is_refused_and_changes_nothing(client, make_product, player):
    # given
    order = pending_order(make_product, player)
    # when: the gateway's shape, signed with a key that is not the gateway's
    response = paid(player, order, forged=True).send(client)
    # then
    assert answer(response) == player.fail
    assert status_of(order) == "pending" and not Payment.objects.exists()
    assert Notification.objects.get().result == "rejected"


def test_a_replayed_notification_is_acknowledged_and_applied_once(client, make_product, player):
    # given: a paid notification taken once
    order = pending_order(make_product, player)
    sent = paid(player, order)
    assert answer(sent.send(client)) == player.ok
    # when: the very same bytes arrive again
    response = sent.send(client)
    # then
    assert answer(response) == player.ok
    assert Payment.objects.filter(order=order).count() == 1
    assert OrderKey.objects.filter(order=order).count() == 1
    assert list(Notification.objects.order_by("id").values_list("result", flat=True)) == ["fulfilled", "duplicate"]


def test_a_wrong_amount_is_flagged_not_fulfilled(client, make_product, player):
    # given
    order = pending_order(make_product, player)
    # when: signed by the gateway, for less than the order costs
    response = paid(player, order, amount=order.amount - Decimal("1.00")).send(client)
    # then: taken (the gateway must not retry), but a human decides
    assert answer(response) == player.ok
    assert (status_of(order), Order.objects.get(pk=order.pk).flag_reason) == ("flagged", "amount_mismatch")
    assert not OrderKey.objects.exists()


def test_a_wrong_merchant_is_refused(client, make_product, player):
    if player.merchant_field is None:
        pytest.skip(f"{player.name}'s notifications name no merchant: what signs them is this shop's alone")
    # given
    order = pending_order(make_product, player)
    # when: signed by the gateway, but for another merchant
    response = paid(player, order, merchant="1900000999").send(client)
    # then
    assert answer(response) == player.fail
    assert status_of(order) == "pending" and not Payment.objects.exists()
    assert player.merchant_field in Notification.objects.get().error


def test_an_unknown_order_is_recorded_and_acknowledged(client, make_product, player):
    # given: a real order, so that something could be wrongly paid
    order = pending_order(make_product, player)
    # when: a signed notification for an order number this shop never made
    response = player.notification(order_no="K20261127NOSUCHORDER", amount=order.amount, trade_no="T999999").send(client)
    # then: taken, so the gateway stops retrying; recorded for a human; nothing paid
    assert answer(response) == player.ok
    assert Notification.objects.get().result == "unknown_order"
    assert status_of(order) == "pending" and not Payment.objects.exists()


def test_a_cut_off_body_is_refused_and_changes_nothing(client, make_product, player):
    # given
    order = pending_order(make_product, player)
    # when: a paid notification cut off halfway
    response = paid(player, order).cut().send(client)
    # then
    assert answer(response) == player.fail
    assert status_of(order) == "pending" and not Payment.objects.exists()
    assert Notification.objects.get().result == "rejected"


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_the_protocol_s_methods_are_taken_and_any_other_refused(client, make_product, player, method):
    # given
    order = pending_order(make_product, player)
    assert GATEWAYS[player.name].notify_methods == player.methods
    # when
    response = paid(player, order, method=method).send(client, method=method)
    # then
    if method in player.methods:
        assert answer(response) == player.ok and status_of(order) == "fulfilled"
    else:
        assert response.status_code == 405
        assert status_of(order) == "pending" and not Notification.objects.exists()
