"""Key pages of the back office: reveal, void and restore one key; import (upload or paste, run
by the worker, with a progress page); generate; export. Each view checks its capability, calls
one service with the actor and IP, and renders; after generate and restore, fulfilment's
`stock_added` serves the orders waiting for keys. A key's plaintext appears on exactly one page:
the answer to the reveal POST, sent no-store."""
from __future__ import annotations

from pathlib import Path

from django import forms
from django.contrib import messages
from django.core.files.uploadhandler import TemporaryFileUploadHandler
from django.core.serializers.json import DjangoJSONEncoder
from django.http import FileResponse, Http404, HttpResponseRedirect, JsonResponse, StreamingHttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt, csrf_protect
from django.views.decorators.http import require_GET, require_http_methods

from kami.backoffice.perms import actor_of, ip_of, require
from kami.catalog.models import Product
from kami.core.errors import KamiError
from kami.fulfilment.backfill import stock_added
from kami.stock import jobs
from kami.stock.generator import DEFAULT_PATTERN
from kami.stock.models import ImportJob, Key
from kami.stock.selectors import import_job_get
from kami.stock.services import key_restore, key_reveal, key_void, keys_export_chunks, keys_generate

GENERATE_MAX = 100_000  # in one request; the CLI (`kami keys generate`) goes to 1,000,000


def _site():
    from kami.backoffice.site import site

    return site


def _page(request, template: str, title: str, **context):
    return render(request, f"backoffice/keys/{template}", {**_site().each_context(request), "title": title, **context})


def _key(key_pk: int) -> Key:
    key = Key.objects.select_related("product").defer("ciphertext").filter(pk=key_pk).first()
    if key is None:
        raise Http404(f"no key #{key_pk}")
    return key


def keys_url(product_id: int | None = None) -> str:
    url = reverse("admin:stock_key_changelist")
    return f"{url}?product__id__exact={product_id}" if product_id else url


def _product_initial(request) -> dict:
    pk = request.GET.get("product", "")
    return {"product": pk} if pk.isdigit() else {}


def _product_field():
    field = forms.ModelChoiceField(queryset=Product.objects.order_by("sort_order", "id"), label=gettext_lazy("Product"))
    field.label_from_instance = lambda product: f"{product.name} ({product.slug})"
    return field


# ---- one key: reveal, void, restore -------------------------------------------------------------

@never_cache
@require_http_methods(["GET", "POST"])
def key_reveal_page(request, key_pk: int):
    """GET: what is about to happen. POST: the plaintext, once, on a page no cache keeps."""
    require(request, "reveal_keys")
    key = _key(key_pk)
    if request.method != "POST":
        return _page(request, "key_action.html", _("Reveal key #%(id)s") % {"id": key.pk}, key=key, action="reveal")
    try:
        secret = key_reveal(key_pk=key.pk, actor=actor_of(request), ip=ip_of(request))
    except KamiError as exc:
        messages.error(request, str(exc))
        return HttpResponseRedirect(keys_url(key.product_id))
    response = _page(request, "revealed.html", _("Key #%(id)s") % {"id": key.pk}, key=key,
                     plaintext=secret.reveal(), back=keys_url(key.product_id))
    response["Cache-Control"] = "no-store, no-cache, must-revalidate, private, max-age=0"
    response["Pragma"] = "no-cache"
    return response


class VoidForm(forms.Form):
    reason = forms.CharField(label=gettext_lazy("Reason"), max_length=200,
                             help_text=gettext_lazy("Kept with the key and in the audit log."))


@never_cache
@require_http_methods(["GET", "POST"])
def key_void_page(request, key_pk: int):
    require(request, "void_keys")
    key = _key(key_pk)
    form = VoidForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            key_void(product=key.product, key_pk=key.pk, reason=form.cleaned_data["reason"], actor=actor_of(request),
                     ip=ip_of(request))
        except KamiError as exc:
            messages.error(request, str(exc))
        else:
            messages.success(request, _("Key #%(id)s is void.") % {"id": key.pk})
        return HttpResponseRedirect(keys_url(key.product_id))
    return _page(request, "key_action.html", _("Void key #%(id)s") % {"id": key.pk}, key=key, action="void",
                 form=form)


@never_cache
@require_http_methods(["GET", "POST"])
def key_restore_page(request, key_pk: int):
    require(request, "void_keys")
    key = _key(key_pk)
    if request.method != "POST":
        return _page(request, "key_action.html", _("Restore key #%(id)s") % {"id": key.pk}, key=key,
                     action="restore")
    try:
        key_restore(key_pk=key.pk, actor=actor_of(request), ip=ip_of(request))
    except KamiError as exc:
        messages.error(request, str(exc))
    else:
        stock_added(product_id=key.product_id)
        messages.success(request, _("Key #%(id)s is on sale again.") % {"id": key.pk})
    return HttpResponseRedirect(keys_url(key.product_id))


# ---- import ----------------------------------------------------------------------------------------

class ImportForm(forms.Form):
    FORMATS = [("auto", gettext_lazy("By the file's name (.csv is CSV, anything else one key per line)")),
               ("txt", gettext_lazy("One key per line")), ("csv", gettext_lazy("CSV: one column holds the keys"))]

    product = _product_field()
    file = forms.FileField(label=gettext_lazy("File"), required=False,
                           help_text=gettext_lazy("A .txt or .csv file, UTF-8, up to 200 MiB."))
    fmt = forms.ChoiceField(label=gettext_lazy("Format"), choices=FORMATS, initial="auto", widget=forms.RadioSelect)
    column = forms.CharField(label=gettext_lazy("CSV column"), required=False, max_length=200,
                             help_text=gettext_lazy("The header name of the keys' column, or its number (1 = first)."))
    text = forms.CharField(label=gettext_lazy("Or paste keys"), required=False, widget=forms.Textarea(
        attrs={"rows": 8, "autocomplete": "off", "spellcheck": "false"}),
        help_text=gettext_lazy("One key per line. For more than a few thousand keys, upload a file."))

    def clean(self):
        cleaned = super().clean()
        upload, text = cleaned.get("file"), (cleaned.get("text") or "").strip()
        if bool(upload) == bool(text):
            raise forms.ValidationError(_("Upload a file or paste keys (one of the two)."))
        return cleaned

    def fmt_of(self, upload) -> str:
        fmt = self.cleaned_data["fmt"]
        if fmt == "auto":
            return "csv" if Path(upload.name).suffix.lower() == ".csv" else "txt"
        return fmt


@csrf_exempt
def import_page(request):
    """Uploads go to a temporary file as they arrive, never into memory (Django's default keeps
    files under 2.5 MB in memory): the handlers are set before anything reads the body, so the
    CSRF check runs after that, in `_import_page`. The role and the size are checked first:
    neither needs the body, so a refused upload is not received at all."""
    require(request, "import_keys")
    if request.method == "POST" and int(request.META.get("CONTENT_LENGTH") or 0) > jobs.max_bytes() + 2**20:
        messages.error(request, _("The file is larger than %(mib)s MiB: split it into smaller files.")
                       % {"mib": jobs.max_bytes() // 2**20})
        return HttpResponseRedirect(request.path)
    request.upload_handlers = [TemporaryFileUploadHandler(request)]
    return _import_page(request)


@never_cache
@csrf_protect
@require_http_methods(["GET", "POST"])
def _import_page(request):
    form = ImportForm(request.POST or None, request.FILES or None, initial=_product_initial(request))
    if request.method == "POST" and form.is_valid():
        data, upload = form.cleaned_data, form.cleaned_data["file"]
        who = {"actor": actor_of(request), "ip": ip_of(request)}
        try:
            if upload:
                job = jobs.import_job_create(product=data["product"], stream=upload, filename=upload.name,
                                             fmt=form.fmt_of(upload), column=data["column"] or None, **who)
            else:
                job = jobs.import_job_create_from_text(product=data["product"], text=data["text"], **who)
        except KamiError as exc:
            form.add_error(None, str(exc))
        else:
            return HttpResponseRedirect(reverse("admin:keys_import_job", args=[job.pk]))
        finally:
            if upload:
                upload.close()  # deletes the temporary file now, not at garbage collection
    return _page(request, "import.html", _("Import keys"), form=form, jobs_url=reverse("admin:stock_importjob_changelist"))


def _job(job_id: int) -> ImportJob:
    job = import_job_get(job_id=job_id)
    if job is None:
        raise Http404(f"no import job #{job_id}")
    return job


@never_cache
@require_GET
def import_job_page(request, job_id: int):
    require(request, "import_keys")
    job = _job(job_id)
    progress = jobs.import_job_progress(job)
    status_url = reverse("admin:keys_import_job_status", args=[job.pk])
    return _page(request, "job.html", _("Import job #%(id)s") % {"id": job.pk}, job=job, progress=progress,
                 finished=job.status in (ImportJob.Status.DONE, ImportJob.Status.FAILED),
                 status_label=_status_labels().get(job.status, job.status),
                 poll={"url": status_url, "every_ms": 1000, "labels": _status_labels()}, keys=keys_url(job.product_id))


def _status_labels() -> dict[str, str]:
    return {"queued": _("queued"), "running": _("running"), "done": _("done"), "failed": _("failed")}


@never_cache
@require_GET
def import_job_status(request, job_id: int):
    require(request, "import_keys")
    return JsonResponse(jobs.import_job_progress(_job(job_id)), encoder=DjangoJSONEncoder)


@never_cache
@require_GET
def import_job_report(request, job_id: int):
    require(request, "import_keys")
    try:
        handle = jobs.import_job_report_open(job_id=job_id, actor=actor_of(request), ip=ip_of(request))
    except KamiError as exc:
        messages.error(request, str(exc))
        return HttpResponseRedirect(reverse("admin:keys_import_job", args=[job_id]))
    return FileResponse(handle, as_attachment=True, filename=f"import-{job_id}-report.csv",
                        content_type="text/csv; charset=utf-8")


# ---- generate ------------------------------------------------------------------------------------

class GenerateForm(forms.Form):
    product = _product_field()
    count = forms.IntegerField(label=gettext_lazy("How many"), min_value=1, max_value=GENERATE_MAX, initial=100)
    pattern = forms.CharField(label=gettext_lazy("Pattern"), max_length=200, initial=DEFAULT_PATTERN,
                              help_text=gettext_lazy("Each X becomes a random letter or digit (no 0/O, 1/I); "
                                                     "at least 8 X."))


@never_cache
@require_http_methods(["GET", "POST"])
def generate_page(request):
    require(request, "generate_keys")
    form = GenerateForm(request.POST or None, initial=_product_initial(request))
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            report = keys_generate(product=data["product"], count=data["count"], pattern=data["pattern"],
                                   actor=actor_of(request), ip=ip_of(request))
        except KamiError as exc:
            form.add_error(None, str(exc))
        else:
            stock_added(product_id=data["product"].pk)
            messages.success(request, _("Generated %(n)s keys.") % {"n": f"{report.imported:,}"})
            return HttpResponseRedirect(keys_url(data["product"].pk))
    return _page(request, "generate.html", _("Generate keys"), form=form)


# ---- export --------------------------------------------------------------------------------------

class ExportForm(forms.Form):
    STATUSES = [("available", gettext_lazy("available")), ("sold", gettext_lazy("sold")),
                ("void", gettext_lazy("void")), ("all", gettext_lazy("all"))]
    FORMATS = [("txt", gettext_lazy("Text, one key per line")),
               ("csv", gettext_lazy("CSV with status, order number and sale time"))]

    product = _product_field()
    status = forms.ChoiceField(label=gettext_lazy("Status"), choices=STATUSES, initial="available")
    fmt = forms.ChoiceField(
        label=gettext_lazy("Format"), choices=FORMATS, initial="txt", widget=forms.RadioSelect,
        help_text=gettext_lazy("In the CSV, a cell that starts with =, +, -, @, a tab or a line break gets a ' in "
                               "front, so a spreadsheet shows it as text and never runs it as a formula. The text "
                               "file holds the keys exactly."))


@never_cache
@require_http_methods(["GET", "POST"])
def export_page(request):
    require(request, "export_keys")
    form = ExportForm(request.POST or None, initial=_product_initial(request))
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        chunks = keys_export_chunks(product=data["product"], status=data["status"], fmt=data["fmt"],
                                    actor=actor_of(request), ip=ip_of(request))  # audited before the first key
        kind = "csv" if data["fmt"] == "csv" else "plain"
        response = StreamingHttpResponse((text.encode() for text, _count in chunks),
                                         content_type=f"text/{kind}; charset=utf-8")
        name = f"{data['product'].slug}-{data['status']}.{data['fmt']}"
        response["Content-Disposition"] = f'attachment; filename="{name}"'
        response["Cache-Control"] = "no-store, private"
        return response
    return _page(request, "export.html", _("Export keys"), form=form)
