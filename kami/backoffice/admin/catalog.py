"""Categories, products and tier prices. Products are never deleted from here (orders and keys
point at them): switch `active` off instead. Price changes are audited."""
from __future__ import annotations

from django import forms
from django.contrib import admin
from django.urls import reverse
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _

from kami.audit.services import audit_record
from kami.backoffice.perms import actor_of, ip_of
from kami.backoffice.site import site
from kami.catalog.custom_fields import custom_fields_clean
from kami.catalog.models import Category, Product, TierPrice
from kami.catalog.pictures import picture_prepare, product_picture_remove, product_picture_set
from kami.catalog.services import product_kind_check, product_update
from kami.core.errors import BadInput, Conflict
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

    picture_upload = forms.FileField(
        label=_("new picture"), required=False,
        help_text=_("PNG, JPEG, GIF or WebP; shown on the home page and the product page. "
                    "Kami stores a copy it draws itself, without the photo's metadata."))
    picture_remove = forms.BooleanField(label=_("remove the picture"), required=False)

    def clean_picture_upload(self):
        upload = self.cleaned_data.get("picture_upload")
        if not upload:
            return None
        try:  # checked and encoded here, so a bad file is named on the form; stored by save_model
            return picture_prepare(upload)
        except BadInput as exc:
            raise forms.ValidationError(str(exc)) from None

    def clean(self):
        cleaned = super().clean()
        if cleaned.get("picture_upload") and cleaned.get("picture_remove"):
            self.add_error("picture_remove", _("Give a new picture or remove the picture, not both."))
        return cleaned

    def clean_kind(self):
        kind = self.cleaned_data.get("kind")
        try:  # shown on the form; product_update checks again under a row lock when saving
            product_kind_check(product=self.instance, kind=kind)
        except Conflict as exc:
            raise forms.ValidationError(str(exc)) from None
        return kind


@admin.register(Product, site=site)
class ProductAdmin(admin.ModelAdmin):
    form = ProductForm
    list_display = ("name", "slug", "price", "currency", "kind", "stock", "active", "sort_order")
    list_editable = ("active", "sort_order")
    list_filter = ("active", "kind", "category")
    search_fields = ("name", "slug")
    prepopulated_fields = {"slug": ("name",)}
    inlines = [TierPriceInline]
    readonly_fields = ("current_picture", "low_stock_alerted", "created_at")
    list_per_page = 50

    @admin.display(description=_("available keys"))
    def stock(self, obj: Product) -> int:
        return available_count(product_id=obj.pk)

    def has_delete_permission(self, request, obj=None):
        return False

    @admin.display(description=_("picture"))
    def current_picture(self, obj: Product) -> str:
        if not obj.picture:
            return "—"
        return format_html('<img src="{}" alt="" class="bo-picture" width="160">',
                           reverse("product-picture", args=[obj.picture_thumb]))

    def save_model(self, request, obj, form, change):
        before = {}
        if change:
            before = dict(Product.objects.filter(pk=obj.pk).values(*AUDITED_FIELDS).first() or {})
        if change:
            product_update(product=obj)  # the catalog's rules on a change (a product's kind is fixed once sold)
        else:
            super().save_model(request, obj, form, change)
        self._picture_save(request, obj, form)
        changed = {f: [str(before.get(f)), str(getattr(obj, f))] for f in AUDITED_FIELDS
                   if not change or before.get(f) != getattr(obj, f)}
        if changed:
            audit_record(actor=actor_of(request), action="product_change" if change else "product_create",
                         obj_type="product", obj_id=obj.pk, ip=ip_of(request), **changed)

    def _picture_save(self, request, obj: Product, form) -> None:
        """The picture goes through the catalog (files written, old ones deleted, audited)."""
        if form.cleaned_data.get("picture_upload"):
            product_picture_set(product=obj, source=form.cleaned_data["picture_upload"], actor=actor_of(request),
                                ip=ip_of(request))
        elif form.cleaned_data.get("picture_remove"):
            product_picture_remove(product=obj, actor=actor_of(request), ip=ip_of(request))

    def save_formset(self, request, form, formset, change):
        super().save_formset(request, form, formset, change)
        if formset.model is TierPrice and formset.has_changed():
            tiers = {str(t.min_quantity): str(t.unit_price) for t in TierPrice.objects.filter(product=form.instance)}
            audit_record(actor=actor_of(request), action="tier_prices_change", obj_type="product",
                         obj_id=form.instance.pk, ip=ip_of(request), tiers=tiers)
