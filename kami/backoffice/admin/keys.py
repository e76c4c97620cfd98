"""Keys and import jobs. A key is listed by id and fingerprint prefix, never by its text: there
is no change page, no add and no delete. Its plaintext comes only from the audited reveal (a
POST button per row); void and restore, import, generate and export are pages of their own
(kami.backoffice.pages.keys)."""
from __future__ import annotations

from django.contrib import admin
from django.db.models import Prefetch
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join
from django.utils.timezone import localtime
from django.utils.translation import gettext_lazy as _

from kami.backoffice.admin.readonly import ReadOnlyAdmin
from kami.backoffice.pages import keys as pages
from kami.backoffice.perms import can
from kami.backoffice.site import site
from kami.orders.models import OrderKey
from kami.stock.jobs import import_job_progress
from kami.stock.models import ImportJob, Key

HEX = set("0123456789abcdef")
SEARCH_LIMIT = 1000

for route, view, name in (
    ("keys/<int:key_pk>/reveal/", pages.key_reveal_page, "keys_reveal"),
    ("keys/<int:key_pk>/void/", pages.key_void_page, "keys_void"),
    ("keys/<int:key_pk>/restore/", pages.key_restore_page, "keys_restore"),
    ("keys/import/", pages.import_page, "keys_import"),
    ("keys/import/<int:job_id>/", pages.import_job_page, "keys_import_job"),
    ("keys/import/<int:job_id>/status.json", pages.import_job_status, "keys_import_job_status"),
    ("keys/import/<int:job_id>/report.csv", pages.import_job_report, "keys_import_job_report"),
    ("keys/generate/", pages.generate_page, "keys_generate"),
    ("keys/export/", pages.export_page, "keys_export"),
):
    site.register_view(route, view, name)


class ListOnlyAdmin(ReadOnlyAdmin):
    """A list and nothing else: no add, change, history or delete page exists at all."""

    list_display_links = None
    actions = None

    def get_urls(self):
        name = f"{self.opts.app_label}_{self.opts.model_name}_changelist"
        return [path("", self.admin_site.admin_view(self.changelist_view), name=name)]



@admin.register(Key, site=site)
class KeyAdmin(ListOnlyAdmin):
    list_display = ("id", "fingerprint_prefix", "status", "batch_no", "created", "sold", "orders")
    list_filter = ("product", "status")
    search_fields = ("fingerprint",)  # see get_search_results
    search_help_text = _("A fingerprint prefix (hex) or an order number.")
    ordering = ("-id",)
    list_per_page = 100
    show_full_result_count = False
    change_list_template = "backoffice/keys/key_change_list.html"

    def get_queryset(self, request):
        # The ciphertext is never even read for a list.
        orders = Prefetch("order_keys", queryset=OrderKey.objects.select_related("order").order_by("id"))
        return super().get_queryset(request).defer("ciphertext").prefetch_related(orders)

    def get_list_display(self, request):
        reveal, void = can(request.user, "reveal_keys"), can(request.user, "void_keys")
        buttons = {(True, True): "reveal_and_void", (True, False): "reveal_only", (False, True): "void_only"}
        column = buttons.get((reveal, void))
        return (*self.list_display, column) if column else self.list_display

    def get_search_results(self, request, queryset, search_term):
        """A fingerprint prefix or an order number. Two index-served lookups, not one OR across
        the orders join (which would scan every key of the product)."""
        term = search_term.strip()
        if not term:
            return queryset, False
        found = list(queryset.filter(order_keys__order__order_no=term).values_list("pk", flat=True)[:SEARCH_LIMIT])
        prefix = term.lower()
        if set(prefix) <= HEX:
            by_fingerprint = queryset.filter(fingerprint__gte=prefix, fingerprint__lt=prefix + "g",
                                             fingerprint__startswith=prefix)
            found += by_fingerprint.values_list("pk", flat=True)[:SEARCH_LIMIT]
        return queryset.filter(pk__in=found), False

    def changelist_view(self, request, extra_context=None):
        product = request.GET.get("product__id__exact", "")
        extra = {"product_id": product if product.isdigit() else "", "can_reveal": can(request.user, "reveal_keys"),
                 "can_import": can(request.user, "import_keys"), "can_generate": can(request.user, "generate_keys"),
                 "can_export": can(request.user, "export_keys")}
        return super().changelist_view(request, {**(extra_context or {}), **extra})

    @admin.display(description=_("fingerprint"))
    def fingerprint_prefix(self, key: Key) -> str:
        return format_html('<code class="kami-fingerprint">{}</code>', key.fingerprint[:8])

    @admin.display(description=_("created"), ordering="created_at")
    def created(self, key: Key) -> str:
        return _short(key.created_at)

    @admin.display(description=_("sold at"), ordering="sold_at")
    def sold(self, key: Key) -> str:
        return _short(key.sold_at)

    @admin.display(description=_("batch"), ordering="batch_id")
    def batch_no(self, key: Key) -> str:
        return f"#{key.batch_id}" if key.batch_id else "—"

    @admin.display(description=_("orders"))
    def orders(self, key: Key) -> str:
        return ", ".join(ok.order.order_no for ok in key.order_keys.all()) or "—"

    @admin.display(description=_("actions"))
    def reveal_and_void(self, key: Key) -> str:
        return self._buttons(key, reveal=True, void=True)

    @admin.display(description=_("actions"))
    def reveal_only(self, key: Key) -> str:
        return self._buttons(key, reveal=True, void=False)

    @admin.display(description=_("actions"))
    def void_only(self, key: Key) -> str:
        return self._buttons(key, reveal=False, void=True)

    @staticmethod
    def _buttons(key: Key, *, reveal: bool, void: bool) -> str:
        buttons = []
        if reveal:
            # The button belongs to a form outside the changelist's own (forms cannot nest): the
            # template renders one small POST form per row.
            buttons.append(format_html('<button type="submit" class="button kami-reveal" form="key-reveal-{}">{}</button>',
                                       key.pk, _("Reveal")))
        if void and key.status == Key.Status.AVAILABLE:
            buttons.append(format_html('<a class="button" href="{}">{}</a>', reverse("admin:keys_void", args=[key.pk]),
                                       _("Void…")))
        elif void and key.status == Key.Status.VOID and not key.sold_at:
            buttons.append(format_html('<a class="button" href="{}">{}</a>',
                                       reverse("admin:keys_restore", args=[key.pk]), _("Restore…")))
        if not buttons:
            return "—"
        return format_html('<span class="kami-key-actions">{}</span>', format_html_join(" ", "{}", ((b,) for b in buttons)))


def _short(moment) -> str:
    """'2026-11-28 12:53' in the shop's time zone: the list stays narrow enough for its buttons."""
    return localtime(moment).strftime("%Y-%m-%d %H:%M") if moment else "—"


@admin.register(ImportJob, site=site)
class ImportJobAdmin(ListOnlyAdmin):
    list_display = ("job", "product", "filename", "status", "percent", "imported", "duplicates", "invalid", "actor",
                    "created_at", "finished_at")
    list_filter = ("status", "product")
    ordering = ("-id",)
    list_per_page = 50
    change_list_template = "backoffice/keys/importjob_change_list.html"

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("product")

    def changelist_view(self, request, extra_context=None):
        extra = {"can_import": can(request.user, "import_keys")}
        return super().changelist_view(request, {**(extra_context or {}), **extra})

    @admin.display(description=_("job"), ordering="id")
    def job(self, job: ImportJob) -> str:
        return format_html('<a href="{}">#{}</a>', reverse("admin:keys_import_job", args=[job.pk]), job.pk)

    @admin.display(description=_("progress"))
    def percent(self, job: ImportJob) -> str:
        return f"{import_job_progress(job)['percent']}%"
