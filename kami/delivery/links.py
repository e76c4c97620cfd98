"""The order link in emails. The buyer's token is stored only hashed, so a later email cannot
rebuild the token link; it carries a signature of the order number instead (HMAC with
SECRET_KEY, salt "order-link"). Like the token, it never expires. Rotating SECRET_KEY breaks old
links unless the old key is kept in SECRET_KEY_FALLBACKS.
"""
from __future__ import annotations

from urllib.parse import urlencode

from django.conf import settings
from django.core import signing
from django.urls import reverse

_SALT = "order-link"


def _signer() -> signing.Signer:
    return signing.Signer(salt=_SALT)


def order_link_signature(order_no: str) -> str:
    return _signer().signature(order_no)


def order_link_signed(order_no: str) -> str:
    """Absolute URL of the order page that works without the buyer's token."""
    path = reverse("order-page", args=[order_no])
    return f"{settings.KAMI_BASE_URL}{path}?{urlencode({'sig': order_link_signature(order_no)})}"


def order_link_verify(order_no: str, sig: str) -> bool:
    """True when `sig` is this shop's signature of `order_no` (current key or a fallback)."""
    if not isinstance(order_no, str) or not isinstance(sig, str) or not order_no or not sig:
        return False
    signer = _signer()
    try:
        return signer.unsign(f"{order_no}{signer.sep}{sig}") == order_no
    except signing.BadSignature:
        return False
