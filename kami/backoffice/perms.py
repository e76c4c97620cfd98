"""One check for the back office's own capabilities (kami.backoffice.models.Capability), used by
every custom view and admin action. Model pages use Django's view/add/change permissions."""
from __future__ import annotations

from django.core.exceptions import PermissionDenied

from kami.core.net import client_ip


def can(user, capability: str) -> bool:
    return bool(user and user.is_active and user.is_staff and user.has_perm(f"backoffice.{capability}"))


def require(request, capability: str) -> None:
    if not can(request.user, capability):
        raise PermissionDenied(f"your role may not {capability.replace('_', ' ')}")


def actor_of(request) -> str:
    return request.user.get_username()


def ip_of(request) -> str:
    return client_ip(request)


def email_mask(email: str) -> str:
    """`alice@example.com` → `a***@example.com`: enough to tell buyers apart, not to use."""
    local, at, domain = (email or "").rpartition("@")
    if not at:
        return email or ""
    return f"{local[:1]}***@{domain}"


def buyer_email_for(user, email: str) -> str:
    """A buyer's email as `user` may read it: whole for roles that may reveal keys, masked for the
    rest. An order number and its full email are what the storefront's lookup asks for, so staff
    without key access must not hold both (search by the full email still finds the order)."""
    return email if can(user, "reveal_keys") else email_mask(email)
