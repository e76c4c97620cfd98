"""Operations: the pages that are not a model's — the dashboard (the back office's index), the
delivery queue, payment gateways, shop settings; each view checks its capability itself — and
coupons, a model page whose writes go through kami.catalog.coupons."""
from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.utils.translation import gettext_lazy as _

from kami.backoffice.pages import api_tokens, dashboard, deliveries, gateways, shop
from kami.backoffice.perms import actor_of, ip_of
from kami.backoffice.site import site
from kami.catalog.coupons import coupon_create, coupon_deactivate, coupon_update
from kami.catalog.models import Coupon
from kami.core.errors import BadInput, NotFound

# The root route comes before the admin's own URLs (KamiAdminSite.extra_urls), so this view
# serves the index: the dashboard for view_dashboard holders, the app list for everyone.
site.register_view("", dashboard.dashboard_index, "dashboard")
site.register_view("deliveries/", deliveries.deliveries_page, "deliveries")
site.register_view("deliveries/<int:message_id>/retry/", deliveries.delivery_retry, "delivery_retry")
site.register_view("deliveries/<int:message_id>/handled/", deliveries.delivery_handled, "delivery_handled")
site.register_view("gateways/", gateways.gateways_page, "gateways")
site.register_view("gateways/<str:name>/", gateways.gateway_save, "gateway_save")
site.register_view("shop/", shop.shop_settings_page, "shop_settings")
for _route, _view, _name in api_tokens.ROUTES:  # merchant API tokens (owners only)
    site.register_view(_route, _view, _name)


class CouponForm(forms.ModelForm):
    """Writes through the coupon services, called once Django's own validation has passed, so a
    refusal (BadInput with its `fields`) lands on the form's fields like any validation error.
    `request` is set by CouponAdmin.get_form (the services need the actor and IP)."""

    request = None

    class Meta:
        model = Coupon
        fields = ("code", "kind", "value", "currency", "products", "usage_limit", "starts_at", "expires_at", "active")

    def full_clean(self):
        super().full_clean()
        if self.is_bound and not self.errors:
            self._write()

    def _write(self) -> None:
        data, actor, ip = self.cleaned_data, actor_of(self.request), ip_of(self.request)
        values = {k: data.get(k) for k in ("kind", "value", "usage_limit", "starts_at", "expires_at")}
        values.update(products=list(data.get("products") or ()), currency=data.get("currency") or "")
        try:
            if self.instance.pk:
                coupon = coupon_update(code=self.instance.code, active=data.get("active"), actor=actor, ip=ip, **values)
            else:
                coupon = coupon_create(code=data["code"], actor=actor, ip=ip, **values)
                if not data.get("active"):
                    coupon = coupon_deactivate(code=coupon.code, actor=actor, ip=ip)
        except (BadInput, NotFound) as exc:
            fields = (getattr(exc, "details", {}) or {}).get("fields") or {}
            targets = [f for f in fields if f in self.fields] or [None]
            for field in targets:
                self.add_error(field, str(exc))
            return
        self.instance = coupon


@admin.register(Coupon, site=site)
class CouponAdmin(admin.ModelAdmin):
    form = CouponForm
    list_display = ("code", "kind", "value", "currency", "used", "usage_limit", "starts_at", "expires_at", "active")
    list_filter = ("active", "kind")
    search_fields = ("code",)
    filter_horizontal = ("products",)
    actions = ["deactivate"]
    list_per_page = 100

    def get_readonly_fields(self, request, obj=None):
        return ("code", "used", "created_at") if obj else ("used", "created_at")

    def get_form(self, request, obj=None, **kwargs):
        form = super().get_form(request, obj, **kwargs)
        return type(form.__name__, (form,), {"request": request})

    def save_model(self, request, obj, form, change):
        """Already written by CouponForm through coupon_create / coupon_update."""

    def save_related(self, request, form, formsets, change):
        """The products were set by the coupon service too."""

    def has_delete_permission(self, request, obj=None):
        return False  # orders keep their coupon: deactivate instead

    @admin.action(description=_("Deactivate the selected coupons"), permissions=["change"])
    def deactivate(self, request, queryset):
        for code in queryset.filter(active=True).values_list("code", flat=True):
            coupon_deactivate(code=code, actor=actor_of(request), ip=ip_of(request))
        self.message_user(request, _("Coupons deactivated."), messages.SUCCESS)
