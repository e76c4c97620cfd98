"""`kami staff add|role|list|setup-link|reset-2fa`: staff accounts from the command line.

There is no default account. The first owner comes from `kami staff add NAME --role owner`,
`kami createsuperuser`, or the one-time setup link (`kami staff setup-link`, printed by
`kami demo`). Passwords are read from a prompt or stdin, never from the command line.
"""
from __future__ import annotations

import getpass
import sys

from django.conf import settings
from django.contrib.auth import get_user_model
from django_otp.plugins.otp_totp.models import TOTPDevice
from rich.console import Console
from rich.table import Table

from kami.audit.services import audit_record
from kami.cli.base import KamiCommand
from kami.core.errors import BadInput, NotFound
from kami.staff.roles import Role, owners_exist, role_of, staff_create, staff_set_role
from kami.staff.setup_link import setup_link_make

ROLES = ", ".join(r.value for r in Role)


class Command(KamiCommand):
    help = "Manage back-office staff: add, set a role, list, print the owner setup link, reset two-factor."

    def add_arguments(self, parser):
        actions = parser.add_subparsers(dest="action", required=True, metavar="{add,role,list,setup-link,reset-2fa}")
        add = actions.add_parser("add", help="create a staff account (password prompted, or --password-stdin)")
        add.add_argument("username")
        add.add_argument("--role", required=True, help=ROLES)
        add.add_argument("--email", default="")
        add.add_argument("--password-stdin", action="store_true", help="read the password from the first line of stdin")
        role = actions.add_parser("role", help="change a staff member's role")
        role.add_argument("username")
        role.add_argument("role", help=ROLES)
        actions.add_parser("list", help="staff accounts, roles and whether two-factor is set up")
        actions.add_parser("setup-link", help="a one-time link that creates the first owner (only while none exists)")
        reset = actions.add_parser("reset-2fa", help="remove someone's authenticator; they enrol again at next sign-in")
        reset.add_argument("username")

    def handle(self, *args, action, **options):
        getattr(self, "_" + action.replace("-", "_"))(**options)

    def _add(self, *, username, role, email, password_stdin, **_):
        if password_stdin:
            password = sys.stdin.readline().rstrip("\n")
        else:
            password = getpass.getpass("Password: ")
            if password != getpass.getpass("Password again: "):
                raise BadInput("the two passwords differ")
        user = staff_create(username=username, email=email, password=password, role=role, actor="cli")
        self.stdout.write(self.style.SUCCESS(f"{user.get_username()} is now {role_of(user).value}."))
        self.stdout.write(f"Sign in at {admin_url()}"
                          + (" — owners set up two-factor at first sign-in." if role_of(user) is Role.OWNER else ""))

    def _role(self, *, username, role, **_):
        user = staff_set_role(username=username, role=role, actor="cli")
        self.stdout.write(self.style.SUCCESS(f"{user.get_username()} is now {role_of(user).value}."))

    def _list(self, **_):
        table = Table("username", "email", "role", "two-factor", "active", "last sign-in")
        for user in get_user_model().objects.filter(is_staff=True).order_by("username"):
            role = role_of(user) if user.is_active else None
            has_device = TOTPDevice.objects.filter(user=user, confirmed=True).exists()
            table.add_row(user.get_username(), user.email, role.value if role else "—", "yes" if has_device else "no",
                          "yes" if user.is_active else "no", str(user.last_login or "never"))
        Console(file=self.stdout, width=120).print(table)

    def _setup_link(self, **_):
        if owners_exist():
            raise BadInput("an owner account exists already; the setup link only creates the first one. "
                           "Use `kami staff add NAME --role owner` for another")
        self.stdout.write(setup_link_make())

    def _reset_2fa(self, *, username, **_):
        user = get_user_model().objects.filter(username=username).first()
        if user is None:
            raise NotFound(f"no staff account named {username!r}")
        removed, _ = TOTPDevice.objects.filter(user=user).delete()
        audit_record(actor="cli", action="totp_reset", obj_type="user", obj_id=user.pk, username=username)
        self.stdout.write(f"{username}: {removed} authenticator(s) removed; they set one up at next sign-in.")


def admin_url() -> str:
    return f"{settings.KAMI_BASE_URL}/{settings.KAMI_ADMIN_PATH}/"
