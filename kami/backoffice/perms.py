"""One check for the back office's own capabilities (kami.backoffice.models.Capability), used by
every custom view and admin action. Model pages use Django's view/add/change permissions."""
from __future__ import annotations

from django.core.exceptions import PermissionDenied


def can(user, capability: str) -> bool:
    return bool(user and user.is_active and user.is_staff and user.has_perm(f"backoffice.{capability}"))


def require(request, capability: str) -> None:
    if not can(request.user, capability):
        raise PermissionDenied(f"your role may not {capability.replace('_', ' ')}")


def actor_of(request) -> str:
    return request.user.get_username()


def ip_of(request) -> str:
    return request.META.get("REMOTE_ADDR", "")
