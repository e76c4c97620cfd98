from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal

from django.db import IntegrityError, transaction
from django.utils.translation import gettext

from kami.audit.services import audit_record
from kami.catalog.coupons import coupon_check, coupon_discount, coupon_for
from kami.catalog.custom_fields import custom_fields_clean
from kami.catalog.models import Coupon, Product, TierPrice
from kami.catalog.selectors import product_get
from kami.core import money
from kami.core.errors import BadInput, Conflict

TIER_MIN_QUANTITY = 2  # quantity 1 always pays the product price (also a database constraint on TierPrice)
AUDITED_FIELDS = ("price", "currency", "active", "kind", "custom_fields")  # a product change records these


class Price(tuple):
    """What `quantity` of a product costs. Unpacks as `(unit, amount)` like before coupons, so
    `unit, amount = price_for(...)` still reads naturally; also carries `subtotal` (unit ×
    quantity), `discount` (what the coupon took off) and `coupon`."""

    def __new__(cls, unit: Decimal, amount: Decimal, *, subtotal: Decimal | None = None,
                discount: Decimal = Decimal("0.00"), coupon: Coupon | None = None) -> "Price":
        price = super().__new__(cls, (unit, amount))
        price.subtotal = amount if subtotal is None else subtotal
        price.discount, price.coupon = discount, coupon
        return price

    @property
    def unit(self) -> Decimal:
        return self[0]

    @property
    def amount(self) -> Decimal:
        return self[1]


def price_for(*, product: Product, quantity: int, coupon: Coupon | str | None = None) -> Price:
    """(unit price, amount) for `quantity` of `product`. The one price function: every caller
    (API, storefront, back office) uses it, and the amount is never taken from the buyer.

    The unit price is the highest tier whose minimum the quantity reaches, else the list price;
    then the coupon (a code the buyer typed, or a Coupon) comes off the whole order: a percentage
    rounded ROUND_HALF_UP to the currency's minor unit (cents), or a fixed amount, never leaving
    less than one minor unit to pay. A coupon that cannot be used raises CouponRefused (a
    translated BadInput naming the reason); whether a use is left is decided at payment (coupon_use_take)."""
    # Tiers start at TIER_MIN_QUANTITY, so a single item never needs the query: the home page
    # prices every card at its minimum quantity, usually 1.
    tier = None if quantity < TIER_MIN_QUANTITY else (
        TierPrice.objects.filter(product_id=product.pk, min_quantity__lte=quantity)
        .order_by("-min_quantity").values_list("unit_price", flat=True).first())
    unit = money.quantize(Decimal(tier if tier is not None else product.price), product.currency)
    subtotal = money.quantize(unit * quantity, product.currency)
    if coupon is None or coupon == "":
        return Price(unit, subtotal)
    if isinstance(coupon, Coupon):
        coupon_check(coupon=coupon, product=product)
    else:
        coupon = coupon_for(code=coupon, product=product)
    discount = coupon_discount(coupon=coupon, subtotal=subtotal, currency=product.currency)
    return Price(unit, subtotal - discount, subtotal=subtotal, discount=discount, coupon=coupon)


def tier_price_check(*, product: Product, min_quantity: int, unit_price: Decimal) -> Decimal:
    """The tier rules, in one place (the back office's form and `tier_price_set` both ask here;
    the first is also a database constraint). Returns the unit price rounded to the currency.
    A refusal is a BadInput whose `details["field"]` names the input at fault."""
    if min_quantity < TIER_MIN_QUANTITY:
        raise BadInput(gettext("Tiers start at 2: quantity 1 always pays the product price."), field="min_quantity")
    if min_quantity > product.max_qty:
        raise BadInput(f"min_quantity {min_quantity} is above the product's max quantity {product.max_qty}; "
                       "raise max_qty first or pick a lower minimum", field="min_quantity")
    unit_price = Decimal(unit_price)
    if unit_price < 0:
        raise BadInput("unit_price must not be negative", field="unit_price")
    return money.quantize(unit_price, product.currency)


def tier_price_set(*, product: Product, min_quantity: int, unit_price: Decimal) -> TierPrice:
    """Create or change the tier starting at `min_quantity` (one tier per minimum)."""
    unit_price = tier_price_check(product=product, min_quantity=min_quantity, unit_price=unit_price)
    tier, _ = TierPrice.objects.update_or_create(product=product, min_quantity=min_quantity,
                                                 defaults={"unit_price": unit_price})
    return tier


def tier_prices_save(*, product: Product, tiers: dict[int, Decimal], actor: str, ip: str = "") -> dict[str, str]:
    """Make the product's tiers exactly `tiers` (min quantity -> unit price), each one through
    `tier_price_set`; the audit row is written when anything changed. Returns the tiers as stored."""
    with transaction.atomic():  # the tiers and their audit row land together
        before = _tiers_shown(product)
        TierPrice.objects.filter(product_id=product.pk).exclude(min_quantity__in=list(tiers)).delete()
        for min_quantity, unit_price in sorted(tiers.items()):
            tier_price_set(product=product, min_quantity=min_quantity, unit_price=unit_price)
        after = _tiers_shown(product)
        if after != before:
            audit_record(actor=actor, action="tier_prices_change", obj_type="product", obj_id=product.pk, ip=ip,
                         tiers=after)
    return after


def _tiers_shown(product: Product) -> dict[str, str]:
    return {str(t.min_quantity): str(t.unit_price) for t in tier_prices_list(product=product)}


def tier_prices_list(*, product: Product) -> list[TierPrice]:
    return list(TierPrice.objects.filter(product_id=product.pk).order_by("min_quantity"))


def product_create(*, slug: str, name: str, price: Decimal, currency: str = "CNY", kind: str = "unique",
                   min_qty: int = 1, max_qty: int = 10, low_stock: int = 0, description: str = "",
                   custom_fields: object = None, active: bool = True, actor: str = "", ip: str = "") -> Product:
    """A new product from plain values (the CLI, the merchant API). With an `actor` it is stored by
    `product_add`, with its audit row, as the back office's are."""
    if Product.objects.filter(slug=slug).exists():
        raise Conflict(f"product {slug!r} already exists; choose another slug")
    if kind not in Product.Kind.values:
        raise BadInput(f"--kind must be one of {', '.join(Product.Kind.values)}")
    if price < 0:
        raise BadInput("--price must not be negative")
    if min_qty < 1 or max_qty < min_qty:
        raise BadInput("quantities: need 1 <= --min-qty <= --max-qty")
    currency = money.parse_currency(currency)
    product = Product(
        slug=slug, name=name, price=money.quantize(price, currency), currency=currency, kind=kind,
        min_qty=min_qty, max_qty=max_qty, low_stock=low_stock, description=description,
        custom_fields=custom_fields_clean(custom_fields), active=active,
    )
    if not actor:
        product.save(force_insert=True)
        return product
    try:
        return product_add(product=product, actor=actor, ip=ip)
    except IntegrityError:  # the same slug stored by a concurrent request since the check above
        raise Conflict(f"product {slug!r} already exists; choose another slug") from None


def product_add(*, product: Product, actor: str, ip: str = "") -> Product:
    """Store a new product the back office's form built, with its audit row."""
    with transaction.atomic():  # the product and its audit row land together
        product.save(force_insert=True)
        audit_record(actor=actor, action="product_create", obj_type="product", obj_id=product.pk, ip=ip,
                     **{f: ["None", str(getattr(product, f))] for f in AUDITED_FIELDS})
    return product


def product_update(*, product: Product, actor: str, ip: str = "", fields: Iterable[str] | None = None) -> Product:
    """Save an edited `product` (all fields, or `fields`). The one way a stored product changes:
    the back office saves through it, so the catalog's rules on a change hold on every path.
    A change to a field of AUDITED_FIELDS is audited as [before, after], in the same transaction."""
    with transaction.atomic():  # lock the stored row: two edits of one product are checked one after the other
        stored = Product.objects.select_for_update().get(pk=product.pk)
        product_kind_check(product=stored, kind=product.kind)
        product.save(update_fields=_edited_fields(fields))
        changed = {f: [str(getattr(stored, f)), str(getattr(product, f))] for f in AUDITED_FIELDS
                   if getattr(stored, f) != getattr(product, f)}
        if changed:
            audit_record(actor=actor, action="product_change", obj_type="product", obj_id=product.pk, ip=ip,
                         **changed)
    product.picture = stored.picture
    return product


PRODUCT_CHANGEABLE = ("name", "description", "price", "currency", "kind", "min_qty", "max_qty", "low_stock", "active")


def product_change(*, slug: str, changes: dict, actor: str, ip: str = "") -> Product:
    """Change some fields of a stored product (the merchant API's partial update), checked like a
    new product's and saved through `product_update` (its kind rule under the row lock, its audit
    row). Only the fields given are written, so a concurrent edit of other fields is kept."""
    unknown = sorted(set(changes) - set(PRODUCT_CHANGEABLE))
    if unknown:
        raise BadInput(f"{', '.join(unknown)}: cannot be changed here; change one of {', '.join(PRODUCT_CHANGEABLE)}")
    product = product_get(slug=slug)
    for name, value in changes.items():
        setattr(product, name, value)
    product.currency = money.parse_currency(product.currency)
    if product.price < 0:
        raise BadInput("price must not be negative", field="price")
    product.price = money.quantize(Decimal(product.price), product.currency)
    if product.min_qty < 1 or product.max_qty < product.min_qty:
        raise BadInput(f"quantities: need 1 <= min_qty <= max_qty (would be min_qty {product.min_qty}, "
                       f"max_qty {product.max_qty}); send both to move them together", field="min_qty")
    if not changes:
        return product
    fields = {*changes, "price"} if "currency" in changes else set(changes)  # the price is rounded to the currency
    return product_update(product=product, actor=actor, ip=ip, fields=sorted(fields))


def _edited_fields(fields: Iterable[str] | None) -> list[str]:
    """Every field but `picture`: a picture changes only with its files (catalog.pictures), so an
    edit made on a page loaded before a new picture never points the product back at old files."""
    names = fields if fields is not None else (f.name for f in Product._meta.concrete_fields if not f.primary_key)
    return [name for name in names if name != "picture"]


def product_kind_check(*, product: Product, kind: str) -> None:
    """Refuse a new `kind` for a stored product that has keys or orders. Keys were imported as
    what the product was (unique keys are sold once, reusable ones go to every buyer) and orders
    were sold as it: switching unique → reusable would hand one buyer the whole stock, and back
    again sell it twice. A new product is the way. (Reads the reverse relations `keys` and
    `orders` by name: the catalog imports neither stock nor orders.)"""
    if product.pk is None or kind == product.kind:
        return
    if product.keys.exists() or product.orders.exists():
        raise Conflict(gettext("kind cannot change once the product has keys or orders; create a new product"),
                       code="kind_fixed")
