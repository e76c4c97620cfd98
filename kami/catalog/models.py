from __future__ import annotations

from django.core.validators import MinValueValidator
from django.db import models
from django.utils.translation import gettext_lazy as _


def picture_file(picture: str, size: str) -> str:
    """"12-0a1b….webp" → "12-0a1b…-thumb.webp": each stored picture is two files, one per size."""
    if not picture:
        return ""
    stem, dot, ext = picture.rpartition(".")
    return f"{stem}-{size}{dot}{ext}"


class Category(models.Model):
    slug = models.SlugField(verbose_name=_("slug"), max_length=64, unique=True)
    name = models.CharField(verbose_name=_("name"), max_length=120)
    sort_order = models.IntegerField(verbose_name=_("sort order"), default=0)

    class Meta:
        verbose_name = _("category")
        verbose_name_plural = _("categories")
        ordering = ["sort_order", "id"]

    def __str__(self) -> str:
        return self.name


class Product(models.Model):
    class Kind(models.TextChoices):
        UNIQUE = "unique", _("unique — each key sold once")
        REUSABLE = "reusable", _("reusable — the same key(s) for every buyer")
        MANUAL = "manual", _("manual — a person delivers each order (top-ups, services)")
        DYNAMIC = "dynamic", _("dynamic — the merchant's system mints the keys for each order")

    slug = models.SlugField(verbose_name=_("slug"), max_length=64, unique=True)
    name = models.CharField(verbose_name=_("name"), max_length=200)
    description = models.TextField(verbose_name=_("description"), blank=True, default="")
    category = models.ForeignKey(Category, verbose_name=_("category"), null=True, blank=True, on_delete=models.SET_NULL,
                                 related_name="products")
    price = models.DecimalField(verbose_name=_("price"), max_digits=14, decimal_places=2,
                                validators=[MinValueValidator(0)])
    currency = models.CharField(verbose_name=_("currency"), max_length=5, default="CNY")
    kind = models.CharField(verbose_name=_("kind"), max_length=10, choices=Kind.choices, default=Kind.UNIQUE)
    min_qty = models.PositiveIntegerField(verbose_name=_("minimum quantity"), default=1)
    max_qty = models.PositiveIntegerField(verbose_name=_("maximum quantity"), default=10)
    low_stock = models.PositiveIntegerField(verbose_name=_("low-stock alert"), default=0,
                                            help_text=_("alert when available keys fall below this"))
    # Set when a low-stock alert has been queued; cleared when stock rises back to the threshold,
    # so the merchant hears once per episode, not once per sale.
    low_stock_alerted = models.BooleanField(verbose_name=_("low-stock alert sent"), default=False)
    instructions = models.TextField(verbose_name=_("instructions"), blank=True, default="",
                                    help_text=_("how to use the key, shown with it to the buyer"))
    # False: the email carries only the order link (the keys stay behind the order page), for
    # merchants who would rather not have keys sitting in mailboxes.
    email_keys = models.BooleanField(verbose_name=_("keys in the email"), default=True)
    # What the buyer fills in at checkout: [{"name", "label", "required", "max_length"}], checked
    # by catalog.services.custom_fields_clean when set and custom_values_clean at checkout.
    custom_fields = models.JSONField(verbose_name=_("custom fields"), default=list, blank=True)
    # The stored picture's name ("<id>-<hash>.webp", see catalog.pictures), "" when none. Written
    # only by product_picture_set / product_picture_remove, never by a form.
    picture = models.CharField(verbose_name=_("picture"), max_length=100, blank=True, default="", editable=False)
    active = models.BooleanField(verbose_name=_("active"), default=True)
    sort_order = models.IntegerField(verbose_name=_("sort order"), default=0)
    created_at = models.DateTimeField(verbose_name=_("created at"), auto_now_add=True)
    # `dynamic` only (kami/fulfilment/mint): the merchant's URL that mints a paid order's keys, and
    # the secret its requests are signed with, sealed with the data key (shown once, when made).
    # Written only by product_mint_set / product_mint_secret_new, never by a form.
    mint_url = models.URLField(verbose_name=_("mint URL"), max_length=500, blank=True, default="", editable=False)
    mint_secret_key_id = models.CharField(verbose_name=_("mint secret's data key id"), max_length=16, blank=True,
                                          default="", editable=False)
    mint_secret_ciphertext = models.BinaryField(verbose_name=_("encrypted mint secret"), null=True, blank=True,
                                                editable=False)

    class Meta:
        verbose_name = _("product")
        verbose_name_plural = _("products")
        ordering = ["sort_order", "id"]

    def __str__(self) -> str:
        return self.slug

    @property
    def picture_thumb(self) -> str:
        """The small picture's file name (home page cards, bot lists), "" when none."""
        return picture_file(self.picture, "thumb")

    @property
    def picture_page(self) -> str:
        """The page-size picture's file name (product page, bot messages), "" when none."""
        return picture_file(self.picture, "page")

    @property
    def needs_keys(self) -> bool:
        """False for `manual` products (a person delivers them) and `dynamic` ones (the merchant's
        system mints their keys per order): both are always in stock."""
        return self.kind not in (self.Kind.MANUAL, self.Kind.DYNAMIC)


class TierPrice(models.Model):
    """A volume price: from `min_quantity` keys up, each costs `unit_price` (see price_for)."""

    product = models.ForeignKey(Product, verbose_name=_("product"), on_delete=models.CASCADE, related_name="tiers")
    min_quantity = models.PositiveIntegerField(verbose_name=_("from quantity"), validators=[MinValueValidator(2)])
    unit_price = models.DecimalField(verbose_name=_("unit price"), max_digits=14, decimal_places=2,
                                     validators=[MinValueValidator(0)])

    class Meta:
        verbose_name = _("tier price")
        verbose_name_plural = _("tier prices")
        ordering = ["product_id", "min_quantity"]
        constraints = [
            models.UniqueConstraint(fields=["product", "min_quantity"], name="tier_price_unique_min"),
            models.CheckConstraint(condition=models.Q(min_quantity__gte=2), name="tier_price_min_at_least_2"),
        ]

    def __str__(self) -> str:
        return f"{self.product_id}≥{self.min_quantity}: {self.unit_price}"


class Coupon(models.Model):
    """A discount code, applied by price_for. `code` is stored normalised (upper case, see
    coupon_code_normalise), so lookups are case-insensitive and the unique constraint holds on
    every engine. `used` counts paid uses and only moves through coupon_use_take (a conditional UPDATE)."""

    class Kind(models.TextChoices):
        FIXED = "fixed", _("fixed amount off the order")
        PERCENT = "percent", _("percent off the order")

    code = models.CharField(verbose_name=_("code"), max_length=32, unique=True)
    kind = models.CharField(verbose_name=_("kind"), max_length=10, choices=Kind.choices)
    value = models.DecimalField(verbose_name=_("value"), max_digits=14, decimal_places=2,
                                validators=[MinValueValidator(0)])
    # The currency of a fixed amount (it applies only to products priced in it); "" for percent.
    currency = models.CharField(verbose_name=_("currency"), max_length=5, blank=True, default="")
    # None: every product.
    products = models.ManyToManyField(Product, verbose_name=_("products"), blank=True, related_name="coupons")
    usage_limit = models.PositiveIntegerField(verbose_name=_("usage limit"), null=True, blank=True)  # None: unlimited
    used = models.PositiveIntegerField(verbose_name=_("times used"), default=0)
    starts_at = models.DateTimeField(verbose_name=_("starts at"), null=True, blank=True)
    expires_at = models.DateTimeField(verbose_name=_("expires at"), null=True, blank=True)
    active = models.BooleanField(verbose_name=_("active"), default=True)
    created_at = models.DateTimeField(verbose_name=_("created at"), auto_now_add=True)

    class Meta:
        verbose_name = _("coupon")
        verbose_name_plural = _("coupons")
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(condition=models.Q(usage_limit__isnull=True) | models.Q(used__lte=models.F("usage_limit")),
                                   name="coupon_used_within_limit"),
            models.CheckConstraint(condition=models.Q(value__gte=0), name="coupon_value_not_negative"),
            models.CheckConstraint(condition=~models.Q(kind="percent") | models.Q(value__lte=100),
                                   name="coupon_percent_at_most_100"),
        ]

    def __str__(self) -> str:
        return self.code


class PictureFile(models.Model):
    """A stored product picture file (kami.catalog.picture_store): in the database, so every web
    and worker machine serves and sends the same pictures without a shared directory."""

    name = models.CharField(verbose_name=_("name"), max_length=100, unique=True)
    data = models.BinaryField(verbose_name=_("data"))
    created_at = models.DateTimeField(verbose_name=_("created at"))

    class Meta:
        verbose_name = _("picture file")
        verbose_name_plural = _("picture files")

    def __repr__(self) -> str:
        return f"<PictureFile {self.name}>"

    __str__ = __repr__
