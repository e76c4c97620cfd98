"""Categories, products and tier prices. Products are never deleted from here (orders and keys
point at them): switch `active` off instead. Products and tiers are written by the catalog's
services (its rules, its audit rows); the forms only show the catalog's refusals."""
from __future__ import annotations

from django import forms
from django.contrib import admin
from django.urls import reverse
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _

from kami.backoffice.perms import actor_of, ip_of
from kami.backoffice.site import site
from kami.catalog.custom_fields import custom_fields_clean
from kami.catalog.models import Category, Product, TierPrice
from kami.catalog.pictures import picture_prepare, product_picture_remove, product_picture_set
from kami.catalog.services import product_add, product_kind_check, product_update, tier_price_check, tier_prices_save
from kami.core.errors import BadInput, Conflict
from kami.stock.selectors import available_count


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

    def __init__(self, *args, product: Product | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.product = product  # as edited on the same page (its new max quantity counts)

    def clean(self):
        cleaned = super().clean()
        min_quantity, unit_price = cleaned.get("min_quantity"), cleaned.get("unit_price")
        if self.product is None or cleaned.get("DELETE") or min_quantity is None or unit_price is None:
            return cleaned
        try:  # the catalog's tier rules, shown on the row; tier_prices_save applies them again
            tier_price_check(product=self.product, min_quantity=min_quantity, unit_price=unit_price)
        except BadInput as exc:
            self.add_error(exc.details.get("field"), str(exc))
        return cleaned


class TierPriceFormSet(forms.BaseInlineFormSet):
    def get_form_kwargs(self, index):
        return {**super().get_form_kwargs(index), "product": self.instance}


class TierPriceInline(admin.TabularInline):
    model = TierPrice
    form = TierPriceForm
    formset = TierPriceFormSet
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
        if change:  # the catalog's rules on a change (a product's kind is fixed once sold) and its audit row
            product_update(product=obj, actor=actor_of(request), ip=ip_of(request))
        else:
            product_add(product=obj, actor=actor_of(request), ip=ip_of(request))
        self._picture_save(request, obj, form)

    def _picture_save(self, request, obj: Product, form) -> None:
        """The picture goes through the catalog (files written, old ones deleted, audited)."""
        if form.cleaned_data.get("picture_upload"):
            product_picture_set(product=obj, source=form.cleaned_data["picture_upload"], actor=actor_of(request),
                                ip=ip_of(request))
        elif form.cleaned_data.get("picture_remove"):
            product_picture_remove(product=obj, actor=actor_of(request), ip=ip_of(request))

    def save_formset(self, request, form, formset, change):
        if formset.model is not TierPrice:
            return super().save_formset(request, form, formset, change)
        formset.save(commit=False)  # writes nothing: fills the lists the admin's change message reads
        tiers = {f.cleaned_data["min_quantity"]: f.cleaned_data["unit_price"] for f in formset.forms
                 if f.cleaned_data and not f.cleaned_data.get("DELETE")}
        tier_prices_save(product=form.instance, tiers=tiers, actor=actor_of(request), ip=ip_of(request))
