"""The first owner's one-time setup link: signed, valid for a day, and dead once any owner
exists (the back office's setup page checks `owners_exist` before it opens)."""
from __future__ import annotations

from django.conf import settings
from django.core import signing

SETUP_SALT = "kami.backoffice.owner-setup"  # unchanged since the link lived in the back office: old links stay valid
SETUP_MAX_AGE = 24 * 3600


def setup_link_make() -> str:
    """A link that creates the first owner. It opens nothing once an owner exists."""
    token = signing.TimestampSigner(salt=SETUP_SALT).sign("owner")
    return f"{settings.KAMI_BASE_URL}/{settings.KAMI_ADMIN_PATH}/setup/{token}/"


def setup_token_ok(token: str) -> bool:
    try:
        return signing.TimestampSigner(salt=SETUP_SALT).unsign(token, max_age=SETUP_MAX_AGE) == "owner"
    except signing.BadSignature:
        return False
