"""Categories, products and tier prices. Products are never deleted from here (orders and keys
point at them): switch `active` off instead. Price changes are audited."""
from __future__ import annotations

from django import forms
from django.contrib import admin
from django.utils.translation import gettext_lazy as _

from kami.audit.services import audit_record
from kami.backoffice.perms import actor_of, ip_of
from kami.backoffice.site import site
from kami.catalog.custom_fields import custom_fields_clean
from kami.catalog.models import Category, Product, TierPrice
from kami.core.errors import BadInput
from kami.stock.claim import available_count

AUDITED_FIELDS = ("price", "currency", "active", "kind", "custom_fields")


@admin.register(Category, site=site)
class CategoryAdmin(admin.ModelAdmin):
    list_display = ("name", "sort_order")
    list_editable = ("sort_order",)
    search_fields = ("name",)

    def has_delete_permission(self, request, obj=None):
        return request.user.is_superuser


class TierPriceForm(forms.ModelForm):
    class Meta:
        model = TierPrice
        fields = ("min_quantity", "unit_price")

    def clean_min_quantity(self):
        value = self.cleaned_data["min_quantity"]
        if value is not None and value < 2:
            raise forms.ValidationError(_("Tiers start at 2: quantity 1 always pays the product price."))
        return value


class TierPriceInline(admin.TabularInline):
    model = TierPrice
    form = TierPriceForm
    extra = 0


class ProductForm(forms.ModelForm):
    class Meta:
        model = Product
        exclude = ("low_stock_alerted",)
        help_texts = {"custom_fields": _('What the buyer fills in at checkout, as JSON, e.g. '
                                         '[{"name": "game_id", "label": "Game ID", "required": true, "max_length": 40}]')}

    def clean_custom_fields(self):
        try:  # the catalog's own rule, so the admin, CLI and API agree on what a field may be
            return custom_fields_clean(self.cleaned_data.get("custom_fields"))
        except BadInput as exc:
            raise forms.ValidationError(str(exc)) from None


@admin.register(Product, site=site)
class ProductAdmin(admin.ModelAdmin):
    form = ProductForm
    list_display = ("name", "slug", "price", "currency", "kind", "stock", "active", "sort_order")
    list_editable = ("active", "sort_order")
    list_filter = ("active", "kind", "category")
    search_fields = ("name", "slug")
    prepopulated_fields = {"slug": ("name",)}
    inlines = [TierPriceInline]
    readonly_fields = ("low_stock_alerted", "created_at")
    list_per_page = 50

    @admin.display(description=_("available keys"))
    def stock(self, obj: Product) -> int:
        return available_count(product_id=obj.pk)

    def has_delete_permission(self, request, obj=None):
        return False

    def save_model(self, request, obj, form, change):
        before = {}
        if change:
            before = dict(Product.objects.filter(pk=obj.pk).values(*AUDITED_FIELDS).first() or {})
        super().save_model(request, obj, form, change)
        changed = {f: [str(before.get(f)), str(getattr(obj, f))] for f in AUDITED_FIELDS
                   if not change or before.get(f) != getattr(obj, f)}
        if changed:
            audit_record(actor=actor_of(request), action="product_change" if change else "product_create",
                         obj_type="product", obj_id=obj.pk, ip=ip_of(request), **changed)

    def save_formset(self, request, form, formset, change):
        super().save_formset(request, form, formset, change)
        if formset.model is TierPrice and formset.has_changed():
            tiers = {str(t.min_quantity): str(t.unit_price) for t in TierPrice.objects.filter(product=form.instance)}
            audit_record(actor=actor_of(request), action="tier_prices_change", obj_type="product",
                         obj_id=form.instance.pk, ip=ip_of(request), tiers=tiers)
