"""Staff accounts, for owners only. A role is the superuser flag (owner) or the operator/support
group; `kami staff` does the same from the command line."""
from __future__ import annotations

from django.contrib import admin, messages
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import UserAdmin
from django.utils.translation import gettext_lazy as _
from django_otp.plugins.otp_totp.models import TOTPDevice

from kami.audit.services import audit_record
from kami.backoffice.perms import actor_of, can, ip_of
from kami.staff.roles import role_of
from kami.backoffice.site import site

User = get_user_model()


@admin.register(User, site=site)
class StaffAdmin(UserAdmin):
    list_display = ("username", "email", "role", "two_factor", "is_active", "last_login")
    list_filter = ("is_active", "is_superuser", "groups")
    actions = ["reset_two_factor"]
    fieldsets = (
        (None, {"fields": ("username", "password")}),
        (_("Contact"), {"fields": ("email",)}),
        (_("Role"), {"fields": ("is_active", "is_staff", "is_superuser", "groups"),
                     "description": _("Owner = superuser. Otherwise put the account in the operator or "
                                      "support group. Staff status must stay on to sign in.")}),
        (_("History"), {"fields": ("last_login", "date_joined")}),
    )

    def _allowed(self, request) -> bool:
        return can(request.user, "manage_staff")

    def has_module_permission(self, request):
        return self._allowed(request)

    def has_view_permission(self, request, obj=None):
        return self._allowed(request)

    def has_add_permission(self, request):
        return self._allowed(request)

    def has_change_permission(self, request, obj=None):
        return self._allowed(request)

    def has_delete_permission(self, request, obj=None):
        return False  # deactivate instead: the audit log keeps naming them

    @admin.display(description=_("role"))
    def role(self, obj) -> str:
        role = role_of(obj)
        return role.value if role else "—"

    @admin.display(description=_("two-factor"), boolean=True)
    def two_factor(self, obj) -> bool:
        return TOTPDevice.objects.filter(user=obj, confirmed=True).exists()

    @admin.action(description=_("Reset two-factor (they enrol again at next sign-in)"))
    def reset_two_factor(self, request, queryset):
        for user in queryset:
            TOTPDevice.objects.filter(user=user).delete()
            audit_record(actor=actor_of(request), action="totp_reset", obj_type="user", obj_id=user.pk,
                         ip=ip_of(request), username=user.get_username())
        messages.success(request, _("Two-factor reset for %(n)d account(s).") % {"n": queryset.count()})

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        audit_record(actor=actor_of(request), action="staff_change" if change else "staff_create",
                     obj_type="user", obj_id=obj.pk, ip=ip_of(request), username=obj.get_username(),
                     changed=sorted(form.changed_data) if change else [])

    def save_related(self, request, form, formsets, change):
        super().save_related(request, form, formsets, change)
        if "groups" in form.changed_data:
            audit_record(actor=actor_of(request), action="staff_role", obj_type="user", obj_id=form.instance.pk,
                         ip=ip_of(request), role=(role_of(form.instance) or "none"))
