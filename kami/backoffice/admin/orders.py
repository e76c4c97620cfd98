"""Orders, read-only: find an order by number, email or the gateway's trade number, filter by
status, gateway, product and date. Nobody edits an order's fields by hand: every change is an
action on the detail page (kami.backoffice.pages.orders) that calls one service, which keeps the
order's history and writes the audit log."""
from __future__ import annotations

from django.contrib import admin
from django.utils.translation import gettext_lazy as _

from kami.backoffice.admin.readonly import ReadOnlyAdmin
from kami.backoffice.pages import orders as pages
from kami.backoffice.perms import can, email_mask
from kami.backoffice.site import site
from kami.orders.models import Order

@admin.register(Order, site=site)
class OrderAdmin(ReadOnlyAdmin):
    list_display = ("number", "item", "qty", "total", "state", "email", "created", "paid")
    list_display_links = ("number",)
    list_filter = ("status", "gateway", "product", ("created_at", admin.DateFieldListFilter))
    # Exact matches use the indexes (order number, email) and serve a pasted trade number;
    # `payments__trade_no` is the trade the notification applied, `gateway_ref` the one the
    # gateway gave at checkout.
    search_fields = ("=order_no", "=email", "=gateway_ref", "=payments__trade_no")
    search_help_text = _("Order number, buyer email or the gateway's trade number (exact).")
    date_hierarchy = "created_at"
    list_select_related = ("product",)
    ordering = ("-created_at", "-id")
    list_per_page = 50
    show_full_result_count = False
    change_list_template = "backoffice/orders/change_list.html"

    @admin.display(description=_("order number"), ordering="order_no")
    def number(self, obj: Order) -> str:
        return obj.order_no

    @admin.display(description=_("product"), ordering="product__name")
    def item(self, obj: Order) -> str:
        return obj.product.name

    @admin.display(description=_("quantity"), ordering="quantity")
    def qty(self, obj: Order) -> int:
        return obj.quantity

    @admin.display(description=_("amount"), ordering="amount")
    def total(self, obj: Order) -> str:
        return f"{obj.amount} {obj.currency}"

    @admin.display(description=_("status"), ordering="status")
    def state(self, obj: Order) -> str:
        return obj.get_status_display()

    def get_list_display(self, request):
        """The email column whole for roles that may reveal keys, masked for the rest."""
        if can(request.user, "reveal_keys"):
            return self.list_display
        return tuple("email_masked" if name == "email" else name for name in self.list_display)

    @admin.display(description=_("email"), ordering="email")
    def email_masked(self, obj: Order) -> str:
        return email_mask(obj.email)

    @admin.display(description=_("created"), ordering="created_at")
    def created(self, obj: Order):
        return obj.created_at

    @admin.display(description=_("paid"), ordering="paid_at")
    def paid(self, obj: Order):
        return obj.paid_at


    def change_view(self, request, object_id, form_url="", extra_context=None):
        return pages.order_detail(request, object_id, model_admin=self)


for _route, _view, _name in pages.ROUTES:
    site.register_view(_route, _view, _name)
