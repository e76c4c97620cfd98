"""Coupons: creating and changing them (staff, audited), checking one for a product (buyers),
and counting a use when an order is paid. The discount itself is computed by services.price_for.

A use is counted when the order is paid, not when it is created: an unpaid order holds nothing,
so nobody can drain a limited coupon with orders they never pay (issue 16). Checkout only checks,
as a courtesy, that the paid uses are below the limit. `used` moves only through one conditional
UPDATE, coupon_use_take (`used = used + 1 WHERE used < usage_limit`), run last in the confirm
transaction (fulfilment/coupon_uses.py); concurrent payments can never push it past the limit.

Guessing codes is limited: a refused code tells whether a coupon exists, so each client may have
KAMI_COUPON_TRIES_LIMIT codes refused per 10 minutes (`coupon_tries_spent`, `coupon_try_refused`,
called by the edges with the client's address); past it no code is looked at until the window ends.
"""
from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from datetime import datetime
from decimal import Decimal, InvalidOperation

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F, Q
from django.utils.translation import gettext

from kami.audit.services import audit_record
from kami.catalog.models import Coupon, Product
from kami.core import clock, money
from kami.core.errors import BadInput, NotFound
from kami.core.ratelimit import ratelimit_hit, ratelimit_spent

CODE_PATTERN = re.compile(r"^[A-Z0-9_-]{3,32}$")
UNSET = object()
TRIES_WINDOW = 600  # seconds: KAMI_COUPON_TRIES_LIMIT refused codes per client in this window


class CouponRefused(BadInput):
    """The buyer's coupon cannot be used; the message is translated and says why.
    `code` is one of coupon_unknown, coupon_inactive, coupon_not_started, coupon_expired,
    coupon_used_up, coupon_not_for_product, coupon_too_many_tries."""


def _refused(code: str, message: str) -> CouponRefused:
    return CouponRefused(message, code=code, fields={"coupon": message})


def coupon_code_normalise(code: object) -> str:
    """What makes two codes the same: NFKC (full-width letters become ASCII), no surrounding
    space, upper case. Codes are stored this way, so `save10` finds `SAVE10`."""
    return unicodedata.normalize("NFKC", code).strip().upper() if isinstance(code, str) else ""


def coupon_check(*, coupon: Coupon, product: Product, at: datetime | None = None) -> None:
    """Raise CouponRefused unless `coupon` can be used on `product` now. The usage count is
    checked here only as a courtesy (paid uses below the limit); the payment decides (coupon_use_take)."""
    now = at or clock.now()
    if not coupon.active:
        raise _refused("coupon_inactive", gettext("This coupon is no longer valid."))
    if coupon.starts_at and now < coupon.starts_at:
        raise _refused("coupon_not_started", gettext("This coupon is not valid yet."))
    if coupon.expires_at and now >= coupon.expires_at:
        raise _refused("coupon_expired", gettext("This coupon has expired."))
    if coupon.usage_limit is not None and coupon.used >= coupon.usage_limit:
        raise _refused("coupon_used_up", gettext("This coupon has been used up."))
    product_ids = set(coupon.products.values_list("id", flat=True))
    wrong_currency = coupon.kind == Coupon.Kind.FIXED and coupon.currency != product.currency
    if (product_ids and product.pk not in product_ids) or wrong_currency:
        raise _refused("coupon_not_for_product", gettext("This coupon does not apply to this product."))


def coupon_for(*, code: object, product: Product) -> Coupon:
    """The coupon a buyer typed, checked for `product`; CouponRefused says what is wrong."""
    normal = coupon_code_normalise(code)
    coupon = Coupon.objects.filter(code=normal).first() if CODE_PATTERN.match(normal) else None
    if coupon is None:
        raise _refused("coupon_unknown", gettext("This coupon code does not exist. Check the spelling."))
    coupon_check(coupon=coupon, product=product)
    return coupon


def _tries(client: str) -> dict:
    return {"scope": "coupon-refused", "identity": client or "-", "limit": settings.KAMI_COUPON_TRIES_LIMIT,
            "window": TRIES_WINDOW}


def coupon_tries_spent(*, client: str) -> CouponRefused | None:
    """The refusal to give, without looking at any code, when `client` (an IP address) has had
    too many codes refused lately; None while it may try."""
    if not ratelimit_spent(**_tries(client)):
        return None
    return _refused("coupon_too_many_tries", gettext("Too many coupon codes tried. Wait a few minutes and try again."))


def coupon_try_refused(*, client: str) -> None:
    """Count one refused code for `client`."""
    ratelimit_hit(**_tries(client))


def coupon_discount(*, coupon: Coupon, subtotal: Decimal, currency: str) -> Decimal:
    """What `coupon` takes off `subtotal`: a percentage rounded half up to the currency's minor
    unit (cents), or the fixed amount; never so much that less than one minor unit is left to
    pay (a gateway cannot take a payment of zero)."""
    if coupon.kind == Coupon.Kind.PERCENT:
        discount = money.quantize(subtotal * coupon.value / Decimal(100), currency)
    else:
        discount = money.quantize(coupon.value, currency)
    floor = money.from_minor(1, currency) if subtotal > 0 else Decimal(0)
    return max(Decimal(0), min(discount, subtotal - floor))


def coupon_used_up(*, coupon_id: int) -> bool:
    """True when the limited coupon `coupon_id` has no use left: a plain read, no lock (the
    confirm asks before it claims keys; coupon_use_take decides)."""
    return Coupon.objects.filter(pk=coupon_id, usage_limit__isnull=False, used__gte=F("usage_limit")).exists()


def coupon_use_take(*, coupon_id: int) -> bool:
    """Count one use of `coupon_id` for an order being paid; False when none is left. One
    conditional UPDATE, in the confirm transaction and last in its lock order (order → payment →
    keys → coupon), so the coupon row is locked only until that commit. Neither the coupon's dates
    nor `active` are looked at: the buyer was given the price at checkout."""
    return bool(Coupon.objects.filter(pk=coupon_id)
                .filter(Q(usage_limit__isnull=True) | Q(used__lt=F("usage_limit")))
                .update(used=F("used") + 1))


# ---- staff -----------------------------------------------------------------------------------

def _value(kind: object, value: object) -> tuple[str, Decimal]:
    if kind not in Coupon.Kind.values:
        raise BadInput(f"kind must be one of {', '.join(Coupon.Kind.values)}", fields={"kind": "fixed or percent"})
    try:
        amount = Decimal(value) if isinstance(value, (Decimal, int, str)) and not isinstance(value, bool) else None
    except InvalidOperation:
        amount = None
    if amount is None or not amount.is_finite():
        raise BadInput(f"value {value!r} is not a number like 10 or 5.50", fields={"value": "a number"})
    if amount <= 0 or (kind == Coupon.Kind.PERCENT and amount > 100):
        hint = "between 0 and 100 (percent)" if kind == Coupon.Kind.PERCENT else "above 0"
        raise BadInput(f"value {amount} must be {hint}", fields={"value": hint})
    return kind, amount.quantize(Decimal("0.01"))


def _products(products: Iterable) -> list[Product]:
    ids = [p.pk if isinstance(p, Product) else p for p in products]
    found = list(Product.objects.filter(pk__in=ids))
    if len(found) != len(set(ids)):
        missing = sorted(set(ids) - {p.pk for p in found})
        raise BadInput(f"no product with id {', '.join(map(str, missing))}", fields={"products": "unknown product"})
    return found


def _currency(kind: str, currency: str, products: list[Product]) -> str:
    """A fixed coupon is an amount in one currency: given, or the one its products (or, for
    every product, the whole shop) are priced in."""
    if kind == Coupon.Kind.PERCENT:
        return ""
    if currency:
        return money.parse_currency(currency)
    seen = {p.currency for p in products} if products else set(Product.objects.values_list("currency", flat=True).distinct())
    if len(seen) != 1:
        raise BadInput("a fixed coupon needs a currency: its products are priced in several (or none); pass currency",
                       fields={"currency": "required"})
    return seen.pop()


def _limits(usage_limit: object, starts_at: datetime | None, expires_at: datetime | None, used: int = 0) -> None:
    if usage_limit is not None and (not isinstance(usage_limit, int) or isinstance(usage_limit, bool) or usage_limit < 1):
        raise BadInput("usage_limit must be a whole number of at least 1, or empty for unlimited",
                       fields={"usage_limit": "at least 1"})
    if usage_limit is not None and usage_limit < used:
        raise BadInput(f"usage_limit {usage_limit} is below the {used} uses already taken; deactivate the coupon instead",
                       fields={"usage_limit": f"at least {used}"})
    if starts_at and expires_at and expires_at <= starts_at:
        raise BadInput("expires_at must be after starts_at", fields={"expires_at": "after starts_at"})


def coupon_create(*, code: str, kind: str, value: Decimal | str | int, products: Iterable = (),
                  usage_limit: int | None = None, starts_at: datetime | None = None, expires_at: datetime | None = None,
                  currency: str = "", actor: str, ip: str = "") -> Coupon:
    """A new coupon. `products` (Product objects or ids) limits it; none means every product."""
    normal = coupon_code_normalise(code)
    if not CODE_PATTERN.match(normal):
        raise BadInput(f"code {code!r}: use 3 to 32 letters, digits, - or _", fields={"code": "3-32 of A-Z 0-9 - _"})
    kind, value = _value(kind, value)
    chosen = _products(products)
    currency = _currency(kind, currency, chosen)
    _limits(usage_limit, starts_at, expires_at)
    try:
        with transaction.atomic():  # the coupon, its products and the audit row together
            coupon = Coupon.objects.create(code=normal, kind=kind, value=value, currency=currency, usage_limit=usage_limit,
                                           starts_at=starts_at, expires_at=expires_at)
            coupon.products.set(chosen)
            audit_record(actor=actor, action="coupon_create", obj_type="coupon", obj_id=coupon.pk, ip=ip,
                         code=normal, kind=kind, value=str(value), currency=currency, usage_limit=usage_limit,
                         products=sorted(p.slug for p in chosen))
    except IntegrityError:
        raise BadInput(f"coupon {normal} already exists; choose another code", fields={"code": "taken"}) from None
    return coupon


def coupon_update(*, code: str, actor: str, ip: str = "", kind: object = UNSET, value: object = UNSET,
                  products: object = UNSET, usage_limit: object = UNSET, starts_at: object = UNSET,
                  expires_at: object = UNSET, currency: object = UNSET, active: object = UNSET) -> Coupon:
    """Change the given fields of the coupon `code` (the code itself never changes: it is what
    buyers were told). Orders already created keep the price they were given."""
    with transaction.atomic():  # lock the coupon: a payment taking a use meanwhile must not slip under a lowered limit
        coupon = Coupon.objects.select_for_update().filter(code=coupon_code_normalise(code)).first()
        if coupon is None:
            raise NotFound(f"no coupon {code!r}")
        new_kind, new_value = _value(coupon.kind if kind is UNSET else kind, coupon.value if value is UNSET else value)
        chosen = list(coupon.products.all()) if products is UNSET else _products(products)
        new_currency = _currency(new_kind, coupon.currency if currency is UNSET else currency, chosen)
        fields = {"kind": new_kind, "value": new_value, "currency": new_currency,
                  "usage_limit": coupon.usage_limit if usage_limit is UNSET else usage_limit,
                  "starts_at": coupon.starts_at if starts_at is UNSET else starts_at,
                  "expires_at": coupon.expires_at if expires_at is UNSET else expires_at,
                  "active": coupon.active if active is UNSET else bool(active)}
        _limits(fields["usage_limit"], fields["starts_at"], fields["expires_at"], used=coupon.used)
        changed = {k: str(v) for k, v in fields.items() if getattr(coupon, k) != v}
        for name, new in fields.items():
            setattr(coupon, name, new)
        coupon.save()
        if products is not UNSET:
            coupon.products.set(chosen)
            changed["products"] = sorted(p.slug for p in chosen)
        audit_record(actor=actor, action="coupon_update", obj_type="coupon", obj_id=coupon.pk, ip=ip,
                     code=coupon.code, changed=changed)
    return coupon


def coupon_deactivate(*, code: str, actor: str, ip: str = "") -> Coupon:
    """Stop a coupon from being used from now on. It is kept, since orders refer to it, and can
    be switched on again with coupon_update(active=True)."""
    with transaction.atomic():  # the change and its audit row together
        coupon = Coupon.objects.filter(code=coupon_code_normalise(code)).first()
        if coupon is None:
            raise NotFound(f"no coupon {code!r}")
        Coupon.objects.filter(pk=coupon.pk).update(active=False)
        coupon.active = False
        audit_record(actor=actor, action="coupon_deactivate", obj_type="coupon", obj_id=coupon.pk, ip=ip, code=coupon.code)
    return coupon
