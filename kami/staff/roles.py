"""Staff roles. An owner is a superuser (everything); operators and support are Django groups
whose permissions are written here, once, and re-applied after every `migrate`.

owner     everything
operator  catalog, orders, after-sales, import — no key reveal or export, no gateways, no staff
support   read orders and deliveries, resend deliveries

Every role signs in with two-factor unless KAMI_ADMIN_TOTP=owners (kami.backoffice.auth). Roles
without reveal_keys see buyers' emails masked (kami.backoffice.perms.buyer_email_for). The
permission names are strings: this module imports nothing from the back office (an edge).
"""
from __future__ import annotations

import logging
from enum import StrEnum

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission
from django.db import transaction

from kami.audit.services import audit_record
from kami.core.errors import BadInput, Conflict, NotFound

log = logging.getLogger("kami.staff")


class Role(StrEnum):
    OWNER = "owner"
    OPERATOR = "operator"
    SUPPORT = "support"


# "app_label.codename". A permission of a model that does not exist (yet) is skipped with a
# warning, so a role never fails to sync because one app is missing a model.
ROLE_PERMISSIONS: dict[Role, tuple[str, ...]] = {
    Role.OPERATOR: (
        "backoffice.view_dashboard", "backoffice.import_keys", "backoffice.generate_keys",
        "backoffice.void_keys", "backoffice.refund_orders", "backoffice.fulfil_orders",
        "backoffice.replace_keys", "backoffice.flag_orders", "backoffice.resend_deliveries",
        "backoffice.handle_deliveries",
        "catalog.view_category", "catalog.add_category", "catalog.change_category",
        "catalog.view_product", "catalog.add_product", "catalog.change_product",
        "catalog.view_tierprice", "catalog.add_tierprice", "catalog.change_tierprice",
        "catalog.delete_tierprice",
        "catalog.view_coupon", "catalog.add_coupon", "catalog.change_coupon",
        "stock.view_key", "stock.view_importbatch", "stock.view_importjob", "stock.add_importjob",
        "orders.view_order", "orders.view_orderevent", "orders.view_orderkey",
        "payments.view_payment", "payments.view_notification",
        "delivery.view_outboxmessage", "delivery.view_deliveryattempt",
    ),
    Role.SUPPORT: (
        "backoffice.resend_deliveries",
        "orders.view_order", "orders.view_orderevent", "orders.view_orderkey",
        "payments.view_payment", "payments.view_notification",
        "delivery.view_outboxmessage", "delivery.view_deliveryattempt",
    ),
}


def _permissions(names: tuple[str, ...]) -> list[Permission]:
    wanted = {tuple(name.split(".", 1)) for name in names}
    found = [p for p in Permission.objects.filter(content_type__app_label__in={a for a, _ in wanted})
             .select_related("content_type") if (p.content_type.app_label, p.codename) in wanted]
    for app_label, codename in wanted - {(p.content_type.app_label, p.codename) for p in found}:
        log.debug("role permission %s.%s does not exist (no such model here); skipped", app_label, codename)
    return found


def roles_sync() -> None:
    """Make the operator and support groups hold exactly their permissions."""
    for role, names in ROLE_PERMISSIONS.items():
        group, _ = Group.objects.get_or_create(name=role.value)
        group.permissions.set(_permissions(names))


def roles_sync_on_migrate(*, using="default", **kwargs) -> None:
    if using == "default":
        roles_sync()


def role_of(user) -> Role | None:
    if not (user.is_authenticated and user.is_active and user.is_staff):
        return None
    if user.is_superuser:
        return Role.OWNER
    names = {g.name for g in user.groups.all()}
    for role in (Role.OPERATOR, Role.SUPPORT):
        if role.value in names:
            return role
    return None


def _role(value: object) -> Role:
    try:
        return Role(str(value))
    except ValueError:
        raise BadInput(f"role {value!r} is not one of: {', '.join(r.value for r in Role)}") from None


def _apply_role(user, role: Role) -> None:
    user.is_staff = True
    user.is_superuser = role is Role.OWNER
    user.save(update_fields=["is_staff", "is_superuser"])
    user.groups.set([] if role is Role.OWNER else [Group.objects.get_or_create(name=role.value)[0]])


def staff_create(*, username: str, email: str, password: str, role: object, actor: str, ip: str = ""):
    """A new staff account. Passwords are checked by Django's validators (length, common)."""
    from django.contrib.auth.password_validation import validate_password
    from django.core.exceptions import ValidationError

    role = _role(role)
    username = (username or "").strip()
    if not username:
        raise BadInput("username is required")
    User = get_user_model()
    if User.objects.filter(username__iexact=username).exists():
        raise Conflict(f"a staff account named {username!r} already exists; pick another name or change its role")
    try:
        validate_password(password or "")
    except ValidationError as exc:
        raise BadInput("password: " + " ".join(exc.messages)) from None
    roles_sync()
    with transaction.atomic():  # the account and its role appear together or not at all
        user = User.objects.create_user(username=username, email=email or "", password=password)
        _apply_role(user, role)
        audit_record(actor=actor, action="staff_create", obj_type="user", obj_id=user.pk, ip=ip,
                     username=username, role=role.value)
    return user


def staff_set_role(*, username: str, role: object, actor: str, ip: str = ""):
    role = _role(role)
    User = get_user_model()
    user = User.objects.filter(username=username).first()
    if user is None:
        raise NotFound(f"no staff account named {username!r}")
    roles_sync()
    with transaction.atomic():  # role and its audit row together
        _apply_role(user, role)
        audit_record(actor=actor, action="staff_role", obj_type="user", obj_id=user.pk, ip=ip,
                     username=username, role=role.value)
    return user


def owners_exist() -> bool:
    return get_user_model().objects.filter(is_superuser=True, is_active=True).exists()
