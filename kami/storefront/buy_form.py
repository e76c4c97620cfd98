"""The coupon and custom-field parts of the product page's buy form. Prices still come only
from catalog.services.price_for; the answers are checked by the order service, not here."""
from __future__ import annotations

from django.http import HttpRequest, QueryDict

from kami.catalog.coupons import CouponRefused
from kami.catalog.models import Product
from kami.catalog.services import price_for

CUSTOM_PREFIX = "custom_"  # form input `custom_<name>` answers the product's field <name>


def custom_values_from(post: QueryDict) -> dict:
    return {k[len(CUSTOM_PREFIX):]: v for k, v in post.items() if k.startswith(CUSTOM_PREFIX)}


def shown_on_product_page(fields: dict) -> bool:
    """Errors the buyer fixes on the product page (coupon, custom fields), not the catalogue."""
    return any(k == "coupon" or k.startswith("custom_values") for k in fields)


def buy_form_context(request: HttpRequest, product: Product, form, errors: dict | None) -> dict:
    """The price at the minimum quantity with the coupon applied (from ?coupon= or the form sent
    back), the coupon's error, and the custom fields with what the buyer typed and their errors."""
    form, errors = form or {}, dict(errors or {})
    code = str(form.get("coupon") or request.GET.get("coupon", "")).strip()[:64]
    price = price_for(product=product, quantity=product.min_qty)
    if code and "coupon" not in errors:
        try:
            price = price_for(product=product, quantity=product.min_qty, coupon=code)
        except CouponRefused as exc:
            errors["coupon"] = str(exc)
    fields = [{**f, "input": CUSTOM_PREFIX + f["name"], "value": form.get(CUSTOM_PREFIX + f["name"], ""),
               "error": errors.get(f"custom_values.{f['name']}", "")} for f in product.custom_fields or []]
    other = [f"{k}: {v}" for k, v in errors.items() if k != "coupon" and not k.startswith("custom_values.")]
    return {"price": price, "unit_price": price.unit, "coupon_code": price.coupon.code if price.coupon else "",
            "coupon_typed": code, "coupon_error": errors.get("coupon", ""), "custom_fields": fields,
            "form_errors": other}
