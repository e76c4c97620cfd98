from __future__ import annotations

from django.db import models
from django.utils.translation import gettext_lazy as _


class ImportBatch(models.Model):
    """One import or generation run: who, when, from where, and what came of it."""

    product = models.ForeignKey("catalog.Product", verbose_name=_("product"), on_delete=models.PROTECT,
                                related_name="batches")
    source = models.CharField(verbose_name=_("source"), max_length=255)
    actor = models.CharField(verbose_name=_("actor"), max_length=150, default="cli")
    created_at = models.DateTimeField(verbose_name=_("created at"), auto_now_add=True)
    finished_at = models.DateTimeField(verbose_name=_("finished at"), null=True, blank=True)
    imported = models.PositiveIntegerField(verbose_name=_("imported"), default=0)
    duplicates = models.PositiveIntegerField(verbose_name=_("duplicates"), default=0)
    invalid = models.PositiveIntegerField(verbose_name=_("invalid"), default=0)

    class Meta:
        verbose_name = _("import batch")
        verbose_name_plural = _("import batches")


class Key(models.Model):
    """A card key. The plaintext is never stored: `ciphertext` is AES-256-GCM under data key
    `key_id`, bound to the product and the fingerprint (`seal`, kami.stock.vault); `fingerprint`
    (HMAC-SHA256 of the normalised key) decides uniqueness. `reusable` is what the key was
    imported as: the claim hands a reusable product only reusable keys, a unique one never."""

    class Seal(models.IntegerChoices):
        SHARED = 1, _("one AAD for every key (older rows)")
        BOUND = 2, _("bound to its product and fingerprint")

    class Status(models.TextChoices):
        AVAILABLE = "available", _("Available")
        SOLD = "sold", _("Sold")
        VOID = "void", _("Void")

    # No index of its own: `key_claim` and `key_unique_per_product` both lead with product_id. A
    # lone product_id index only tempts PostgreSQL, on stale statistics, into scanning every key
    # of a product for a fingerprint lookup (a 1M-key import went from 70 s to over 10 minutes).
    product = models.ForeignKey("catalog.Product", verbose_name=_("product"), on_delete=models.PROTECT,
                                related_name="keys", db_index=False)
    ciphertext = models.BinaryField(verbose_name=_("ciphertext"))
    key_id = models.CharField(verbose_name=_("data key id"), max_length=16)
    fingerprint = models.CharField(verbose_name=_("fingerprint"), max_length=64)
    status = models.CharField(verbose_name=_("status"), max_length=10, choices=Status.choices, default=Status.AVAILABLE)
    # Where the key came from (the import report's "duplicate in the file", a resumed job's count,
    # the key list's "#batch"): provenance, not money. No database constraint: its check ran once
    # per imported row at commit, a fifth of the PostgreSQL import's floor (docs/performance.md,
    # "Import"). The batch row is written before its keys and never deleted by Kami; a deletion
    # through Django still sets the keys' batch to NULL (on_delete), and the index stays for both.
    batch = models.ForeignKey(ImportBatch, verbose_name=_("batch"), null=True, blank=True, on_delete=models.SET_NULL,
                              related_name="keys", db_constraint=False)
    created_at = models.DateTimeField(verbose_name=_("created at"), auto_now_add=True)
    sold_at = models.DateTimeField(verbose_name=_("sold at"), null=True, blank=True)
    void_reason = models.CharField(verbose_name=_("void reason"), max_length=200, blank=True, default="")
    # The product's kind when the key was stored, never changed afterwards (a product's kind is
    # fixed once it has keys): a reusable key goes to every buyer, so it must never pass for a
    # unique one, nor a unique key be handed out as reusable.
    reusable = models.BooleanField(verbose_name=_("imported as reusable"), default=False)
    seal = models.PositiveSmallIntegerField(verbose_name=_("sealing format"), choices=Seal.choices,
                                            default=Seal.BOUND)

    class Meta:
        verbose_name = _("key")
        verbose_name_plural = _("keys")
        constraints = [models.UniqueConstraint(fields=["product", "fingerprint"], name="key_unique_per_product")]
        # The claim filters product, status and reusable, and reads in id order: both indexes hold a
        # product's available keys together, so a claim never re-reads sold ones (DESIGN.md §7).
        # `key_claim` serves every engine; `key_claim_available` (available keys only; a sale writes
        # no entry to it) is PostgreSQL's alternative: SQLite uses a partial index only for a literal.
        # MariaDB has no partial indexes: Django builds this one there without its condition, which
        # MariaDB then chose for the claim, reading every sold key; migration 0010 drops it there.
        # What kept PostgreSQL off the primary key after ANALYZE is the joint statistics of
        # migration 0007 (issue 9; concurrency.md). `key_claim` also serves every count and list by
        # status (stock summary, export, the key list): kept on PostgreSQL too, though the import
        # writes it (docs/performance.md, "Import").
        indexes = [
            models.Index(fields=["product", "status", "id"], name="key_claim"),
            models.Index(fields=["product", "reusable", "id"], name="key_claim_available",
                         condition=models.Q(status="available")),
        ]

    def __repr__(self) -> str:
        return f"<Key #{self.pk} {self.fingerprint[:8]} {self.status}>"

    __str__ = __repr__


class ImportFile(models.Model):
    """A file of an import job, kept in the database in chunks (ImportFileChunk) so that the web
    that received an upload and the worker that imports it need no shared directory: the upload
    (plaintext keys, deleted when its job ends) and the job's report (kami.stock.jobfiles)."""

    created_at = models.DateTimeField(verbose_name=_("created at"))

    class Meta:
        verbose_name = _("import file")
        verbose_name_plural = _("import files")

    def __repr__(self) -> str:
        return f"<ImportFile #{self.pk}>"

    __str__ = __repr__


class ImportFileChunk(models.Model):
    """At most 1 MiB of an ImportFile, at byte `offset`: memory stays flat for any file size,
    and each row stays well under MariaDB's max_allowed_packet (16 MiB by default). An upload's
    chunks hold plaintext keys: they are AES-256-GCM under data key `key_id` (a database dump
    reads no key, invariant 5); a report's ("" here) hold no key text and are stored as they are."""

    file = models.ForeignKey(ImportFile, verbose_name=_("file"), on_delete=models.CASCADE, related_name="chunks")
    offset = models.BigIntegerField(verbose_name=_("offset"))
    key_id = models.CharField(verbose_name=_("key id"), max_length=16, blank=True, default="")
    data = models.BinaryField(verbose_name=_("data"))

    class Meta:
        verbose_name = _("import file chunk")
        verbose_name_plural = _("import file chunks")
        constraints = [models.UniqueConstraint(fields=["file", "offset"], name="import_file_chunk_offset")]

    def __repr__(self) -> str:
        return f"<ImportFileChunk file #{self.file_id} @{self.offset}>"

    __str__ = __repr__


class ImportJob(models.Model):
    """A key import from an uploaded file, run in the background by a worker (kami.stock.jobs).

    The counts and the position (`bytes_done`, `lines_done`, `report_bytes`) are written after
    every chunk: they are the progress bar and the checkpoint a resumed run continues from."""

    class Status(models.TextChoices):
        QUEUED = "queued", _("Queued")
        RUNNING = "running", _("Running")
        DONE = "done", _("Done")
        FAILED = "failed", _("Failed")

    class Format(models.TextChoices):
        TXT = "txt", _("Text (.txt)")
        CSV = "csv", _("CSV table (.csv)")

    product = models.ForeignKey("catalog.Product", verbose_name=_("product"), on_delete=models.PROTECT,
                                related_name="import_jobs")
    status = models.CharField(verbose_name=_("status"), max_length=10, choices=Status.choices, default=Status.QUEUED)
    filename = models.CharField(verbose_name=_("file name"), max_length=255)
    fmt = models.CharField(verbose_name=_("format"), max_length=4, choices=Format.choices, default=Format.TXT)
    # csv: header name or 1-based number.
    column = models.CharField(verbose_name=_("column"), max_length=200, blank=True, default="")
    actor = models.CharField(verbose_name=_("actor"), max_length=150)
    ip = models.CharField(verbose_name=_("IP address"), max_length=45, blank=True, default="")
    batch = models.ForeignKey(ImportBatch, verbose_name=_("batch"), null=True, blank=True, on_delete=models.SET_NULL,
                              related_name="jobs")
    bytes_total = models.BigIntegerField(verbose_name=_("file size (bytes)"), default=0)
    bytes_done = models.BigIntegerField(verbose_name=_("bytes read"), default=0)
    lines_done = models.PositiveIntegerField(verbose_name=_("lines read"), default=0)
    imported = models.PositiveIntegerField(verbose_name=_("imported"), default=0)
    duplicates = models.PositiveIntegerField(verbose_name=_("duplicates"), default=0)
    duplicates_in_file = models.PositiveIntegerField(verbose_name=_("duplicates in the file"), default=0)
    invalid = models.PositiveIntegerField(verbose_name=_("invalid"), default=0)
    blank = models.PositiveIntegerField(verbose_name=_("blank lines"), default=0)
    # The uploaded file until the job ends, and the report (ImportFile: in the database, see there).
    upload = models.ForeignKey(ImportFile, verbose_name=_("upload"), null=True, blank=True, on_delete=models.SET_NULL,
                               related_name="+")
    report = models.ForeignKey(ImportFile, verbose_name=_("report"), null=True, blank=True, on_delete=models.SET_NULL,
                               related_name="+")
    report_bytes = models.BigIntegerField(verbose_name=_("report size (bytes)"), default=0)
    error = models.TextField(verbose_name=_("error"), blank=True, default="")
    created_at = models.DateTimeField(verbose_name=_("created at"))
    started_at = models.DateTimeField(verbose_name=_("started at"), null=True, blank=True)
    finished_at = models.DateTimeField(verbose_name=_("finished at"), null=True, blank=True)
    # The worker running it and until when; a lease that ran out means that worker died, and
    # the next worker resumes the job from its checkpoint.
    lease_owner = models.CharField(verbose_name=_("lease owner"), max_length=100, blank=True, default="")
    lease_until = models.DateTimeField(verbose_name=_("lease until"), null=True, blank=True)
    runs = models.PositiveSmallIntegerField(verbose_name=_("runs"), default=0)

    class Meta:
        verbose_name = _("import job")
        verbose_name_plural = _("import jobs")
        indexes = [models.Index(fields=["status", "id"], name="import_job_due")]

    def __repr__(self) -> str:
        return f"<ImportJob #{self.pk} {self.status} {self.filename!r}>"

    __str__ = __repr__
