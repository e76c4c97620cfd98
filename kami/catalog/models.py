from __future__ import annotations

from django.core.validators import MinValueValidator
from django.db import models


class Category(models.Model):
    slug = models.SlugField(max_length=64, unique=True)
    name = models.CharField(max_length=120)
    sort_order = models.IntegerField(default=0)

    class Meta:
        ordering = ["sort_order", "id"]
        verbose_name_plural = "categories"

    def __str__(self) -> str:
        return self.name


class Product(models.Model):
    class Kind(models.TextChoices):
        UNIQUE = "unique", "unique — each key sold once"
        REUSABLE = "reusable", "reusable — the same key(s) for every buyer"

    slug = models.SlugField(max_length=64, unique=True)
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True, default="")
    category = models.ForeignKey(Category, null=True, blank=True, on_delete=models.SET_NULL, related_name="products")
    price = models.DecimalField(max_digits=14, decimal_places=2, validators=[MinValueValidator(0)])
    currency = models.CharField(max_length=5, default="CNY")
    kind = models.CharField(max_length=10, choices=Kind.choices, default=Kind.UNIQUE)
    min_qty = models.PositiveIntegerField(default=1)
    max_qty = models.PositiveIntegerField(default=10)
    low_stock = models.PositiveIntegerField(default=0, help_text="alert when available keys fall below this")
    # Set when a low-stock alert has been queued; cleared when stock rises back to the threshold,
    # so the merchant hears once per episode, not once per sale.
    low_stock_alerted = models.BooleanField(default=False)
    instructions = models.TextField(blank=True, default="", help_text="how to use the key, shown with it to the buyer")
    # False: the email carries only the order link (the keys stay behind the order page), for
    # merchants who would rather not have keys sitting in mailboxes.
    email_keys = models.BooleanField(default=True)
    active = models.BooleanField(default=True)
    sort_order = models.IntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["sort_order", "id"]

    def __str__(self) -> str:
        return self.slug


class TierPrice(models.Model):
    """A volume price: from `min_quantity` keys up, each costs `unit_price` (see price_for)."""

    product = models.ForeignKey(Product, on_delete=models.CASCADE, related_name="tiers")
    min_quantity = models.PositiveIntegerField(validators=[MinValueValidator(2)])
    unit_price = models.DecimalField(max_digits=14, decimal_places=2, validators=[MinValueValidator(0)])

    class Meta:
        ordering = ["product_id", "min_quantity"]
        constraints = [
            models.UniqueConstraint(fields=["product", "min_quantity"], name="tier_price_unique_min"),
            models.CheckConstraint(condition=models.Q(min_quantity__gte=2), name="tier_price_min_at_least_2"),
        ]

    def __str__(self) -> str:
        return f"{self.product_id}≥{self.min_quantity}: {self.unit_price}"
