from __future__ import annotations

import secrets

from django.contrib.auth.hashers import check_password, make_password
from django.db import connection
from django.db.models import QuerySet

from kami.core.crypto import Secret, token_matches
from kami.core.errors import NotFound
from kami.orders.models import Order, OrderKey, email_normalise
from kami.stock.vault import key_open


def order_get_for_buyer(*, order_no: str, token: str) -> Order:
    """The order, if the token matches. An unknown order and a wrong token look the same."""
    order = Order.objects.select_related("product").filter(order_no=order_no).first() if order_no else None
    if order is None or not token or not token_matches(token, order.token_hash):
        raise NotFound("order not found")
    return order


def order_keys_plaintext(*, order: Order) -> list[Secret]:
    """The keys delivered to an order, decrypted. Keep the result in as few frames as possible."""
    return order_keys_open(OrderKey.objects.filter(order=order).select_related("key").order_by("position", "id"))


def order_and_key_rows(*, order_id) -> tuple[Order | None, list[OrderKey]]:
    """An order (its product with it) and its key rows, still sealed. None: no such order. Open
    the rows (`order_keys_open`) only once the caller has decided the order may see them."""
    return orders_and_key_rows(order_ids=[order_id]).get(order_id, (None, []))


def orders_and_key_rows(*, order_ids) -> dict:
    """{order_id: (order with its product, its key rows in order, still sealed)} for the orders
    that exist. One query for all the orders that have keys (the delivery worker reads a whole
    pass's key emails this way), a second only if some have none."""
    ids = sorted({i for i in order_ids if isinstance(i, int)})
    found: dict = {}
    for row in (OrderKey.objects.filter(order_id__in=ids).select_related("key", "order__product")
                .order_by("order_id", "position", "id")):
        found.setdefault(row.order_id, (row.order, []))[1].append(row)
    missing = [i for i in ids if i not in found]
    if missing:
        found.update((o.pk, (o, [])) for o in Order.objects.select_related("product").filter(pk__in=missing))
    return found


def order_key_state(*, order_id: int) -> tuple[str, tuple[int, ...]] | None:
    """What a key email's content depends on, as committed now: the order's status and the ids of
    its keys in their order (a refund changes the one, a replacement the other). One short read on
    the primary key, cheap enough to run before every email, where `orders_and_key_rows` builds
    model rows. None: no such order."""
    order, link = Order._meta, OrderKey._meta
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT o.status, k.key_id FROM {order.db_table} o LEFT JOIN {link.db_table} k"
                       f" ON k.order_id = o.id WHERE o.id = %s ORDER BY k.position, k.id", [order_id])
        rows = cursor.fetchall()
    if not rows:
        return None
    return rows[0][0], tuple(key_id for _, key_id in rows if key_id is not None)


def order_keys_open(rows) -> list[Secret]:
    return [key_open(r.key) for r in rows]


# The password way's cost: this many PBKDF2 checks (~0.3-0.4 s each) per lookup, hit or miss.
LOOKUP_MAX_ORDERS = 3
LOOKUP_PASSWORD_MIN, LOOKUP_PASSWORD_MAX = 8, 64
_dummy_hash: list[str] = []


def _dummy_check(password: str) -> None:
    """Spend the time of one password check that cannot succeed, so a miss costs what a hit does."""
    if not _dummy_hash:
        # A real hash of a random password: an unusable one ("!…") would return at once.
        _dummy_hash.append(make_password(secrets.token_urlsafe(32)))
    check_password(password, _dummy_hash[0])


def lookup_password_fits(password: object) -> bool:
    """A lookup password's length rule, at checkout and at lookup."""
    return isinstance(password, str) and LOOKUP_PASSWORD_MIN <= len(password) <= LOOKUP_PASSWORD_MAX


def orders_lookup(*, email: str, order_no: str = "", password: str = "") -> list[Order]:
    """Orders matching two things: the order number and its email, or the email and the lookup
    password chosen at checkout (the most recent LOOKUP_MAX_ORDERS orders that have one). Every
    miss is the same empty list, and a miss of a well-formed request costs what a hit does:
    exactly LOOKUP_MAX_ORDERS password checks on the password way, padded with checks that cannot
    match. A request no order could match (no email, a password of the wrong length) is refused
    before any hashing: it reveals nothing, so it need not cost anything.
    """
    email = (email or "").strip()
    order_no = (order_no or "").strip()
    if not email or len(email) > 254:
        return []
    if order_no:
        order = Order.objects.select_related("product").filter(order_no=order_no[:32]).first()
        return [order] if order is not None and email_normalise(order.email) == email_normalise(email) else []
    if not lookup_password_fits(password):
        return []
    candidates = list(Order.objects.select_related("product").filter(email_norm=email_normalise(email)).exclude(lookup_hash="")
                      .order_by("-created_at", "-id")[:LOOKUP_MAX_ORDERS])
    found = [o for o in candidates if check_password(password, o.lookup_hash)]
    for _ in range(LOOKUP_MAX_ORDERS - len(candidates)):
        _dummy_check(password)
    return found


def orders_awaiting_staff() -> QuerySet[Order]:
    """Paid orders a person must act on: `awaiting_manual` (deliver by hand) and `awaiting_stock`
    (import keys or fulfil by hand), oldest paid first."""
    return (Order.objects.select_related("product")
            .filter(status__in=(Order.Status.AWAITING_MANUAL, Order.Status.AWAITING_STOCK))
            .order_by("paid_at", "id"))
