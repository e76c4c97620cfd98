"""The order link in emails. The buyer's token is stored only hashed, so a later email cannot
rebuild the token link; it carries a signature instead: HMAC with SECRET_KEY (salt
"order-link") over the order number and the hour the link was made, `sig=<hour>.<mac>`.

A link works for KAMI_ORDER_LINK_DAYS days (default 7), counted from when the email was sent:
a forwarded or leaked email stops opening the keys, and the buyer asks for a fresh link on the
lookup page, which sends it to the order's email only. The hour (not the second) keeps every
link of one email identical. Links from before expiry existed (a signature of the bare order
number) count as expired. Rotating SECRET_KEY breaks links unless the old key is kept in
SECRET_KEY_FALLBACKS.
"""
from __future__ import annotations

from enum import StrEnum
from urllib.parse import urlencode

from django.conf import settings
from django.core import signing
from django.urls import reverse

from kami.core import clock

_SALT = "order-link"
HOUR = 3600


class LinkCheck(StrEnum):
    OK = "ok"
    EXPIRED = "expired"
    BAD = "bad"


def _signer() -> signing.Signer:
    # "." rather than ":" between the hour and the MAC: nothing to escape in a URL.
    return signing.Signer(salt=_SALT, sep=".")


def _hour_now() -> int:
    return int(clock.now().timestamp()) // HOUR


def link_days() -> int:
    return settings.KAMI_ORDER_LINK_DAYS


def order_link_signature(order_no: str) -> str:
    """`<hour>.<mac>`, the `sig` parameter of an order link made now."""
    signer, stamp = _signer(), signing.b62_encode(_hour_now())
    return f"{stamp}{signer.sep}{signer.signature(f'{order_no}{signer.sep}{stamp}')}"


def order_link_signed(order_no: str) -> str:
    """Absolute URL of the order page that works without the buyer's token, for link_days()."""
    path = reverse("order-page", args=[order_no])
    return f"{settings.KAMI_BASE_URL}{path}?{urlencode({'sig': order_link_signature(order_no)})}"


def lookup_url() -> str:
    """Where a buyer with an expired link asks for a new one."""
    return f"{settings.KAMI_BASE_URL}{reverse('order-lookup')}"


def order_link_check(order_no: str, sig: str) -> LinkCheck:
    """OK while `sig` is this shop's signature of `order_no` (current key or a fallback) and is
    younger than link_days(); EXPIRED when it is ours but too old (or from before links expired);
    BAD otherwise."""
    if not isinstance(order_no, str) or not isinstance(sig, str) or not order_no or not sig:
        return LinkCheck.BAD
    signer = _signer()
    try:
        signed = signer.unsign(f"{order_no}{signer.sep}{sig}")
    except signing.BadSignature:
        return LinkCheck.BAD
    if signed == order_no:  # a link made before links expired
        return LinkCheck.EXPIRED
    number, _, stamp = signed.rpartition(signer.sep)
    if number != order_no:
        return LinkCheck.BAD
    age_hours = _hour_now() - signing.b62_decode(stamp)
    return LinkCheck.OK if age_hours < link_days() * 24 else LinkCheck.EXPIRED


def order_link_verify(order_no: str, sig: str) -> bool:
    """True when `sig` opens `order_no` now."""
    return order_link_check(order_no, sig) is LinkCheck.OK


def order_link_expired(order_no: str, sig: str) -> bool:
    """True when `sig` was a good link for `order_no` that has expired: worth telling the buyer."""
    return order_link_check(order_no, sig) is LinkCheck.EXPIRED
