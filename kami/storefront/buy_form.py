"""The coupon and custom-field parts of the product page's buy form. Prices still come only
from catalog.services.price_for; the answers are checked by the order service, not here."""
from __future__ import annotations

from django.http import HttpRequest, QueryDict

from kami.catalog.coupons import CouponRefused, coupon_tries_spent, coupon_try_refused
from kami.catalog.models import Product
from kami.catalog.services import price_for
from kami.core.net import client_ip
from kami.orders.selectors import LOOKUP_PASSWORD_MAX, LOOKUP_PASSWORD_MIN

CUSTOM_PREFIX = "custom_"  # form input `custom_<name>` answers the product's field <name>


def custom_values_from(post: QueryDict) -> dict:
    return {k[len(CUSTOM_PREFIX):]: v for k, v in post.items() if k.startswith(CUSTOM_PREFIX)}


def shown_on_product_page(fields: dict) -> bool:
    """Errors the buyer fixes on the product page (coupon, order password, custom fields), not
    the catalogue."""
    return any(k in ("coupon", "lookup_password") or k.startswith("custom_values") for k in fields)


def buy_form_context(request: HttpRequest, product: Product, form, errors: dict | None) -> dict:
    """The price at the minimum quantity with the coupon applied (from ?coupon= or the form sent
    back), the coupon's error, and the custom fields with what the buyer typed and their errors."""
    form, errors = form or {}, dict(errors or {})
    code = str(form.get("coupon") or request.GET.get("coupon", "")).strip()[:64]
    price = price_for(product=product, quantity=product.min_qty)
    if code and "coupon" not in errors:
        client = client_ip(request)
        refusal = coupon_tries_spent(client=client)  # too many refused from here: the code is not looked at
        if refusal:
            errors["coupon"] = str(refusal)
        else:
            try:
                price = price_for(product=product, quantity=product.min_qty, coupon=code)
            except CouponRefused as exc:
                coupon_try_refused(client=client)
                errors["coupon"] = str(exc)
    fields = [{**f, "input": CUSTOM_PREFIX + f["name"], "value": form.get(CUSTOM_PREFIX + f["name"], ""),
               "error": errors.get(f"custom_values.{f['name']}", "")} for f in product.custom_fields or []]
    other = [f"{k}: {v}" for k, v in errors.items()
             if k not in ("coupon", "lookup_password") and not k.startswith("custom_values.")]
    return {"price": price, "unit_price": price.unit, "coupon_code": price.coupon.code if price.coupon else "",
            "coupon_typed": code, "coupon_error": errors.get("coupon", ""), "custom_fields": fields,
            "lookup_password_error": errors.get("lookup_password", ""), "form_errors": other,
            "lookup_password_min": LOOKUP_PASSWORD_MIN, "lookup_password_max": LOOKUP_PASSWORD_MAX}
