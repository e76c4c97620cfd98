"""Who must use two-factor sign-in (KAMI_ADMIN_TOTP), said where `kami serve` warns about it."""
from __future__ import annotations

from django.conf import settings


def totp_policy_warning() -> str:
    """A start-up warning when two-factor is required of owners only ("" when it is not): an
    operator's password alone then refunds orders, changes prices and creates 100 % coupons."""
    if settings.KAMI_ADMIN_TOTP != "owners":
        return ""
    return ("KAMI_ADMIN_TOTP=owners: operators and support sign in with a password alone, and operators can "
            "refund orders, change prices and create 100 % coupons. Unset it (the default, all) to require "
            "two-factor of every staff member.")
