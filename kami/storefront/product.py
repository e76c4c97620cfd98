"""The product page and its stock check. The form posts to the `buy` view; the amount is
always priced by catalog.services.price_for, the tier table here only shows the same tiers.
A page with an untouched form (no typed values, error, coupon or captcha) is cached
(storefront.fragments): its product, tiers, stock state and gateways are read each time."""
from __future__ import annotations

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render

from kami.catalog.models import Product
from kami.catalog.services import tier_prices_list
from kami.payments.registry import gateways_enabled
from kami.storefront.buy_form import buy_form_context
from kami.storefront.captcha_check import captcha_new
from kami.storefront.fragments import page_cached
from kami.storefront.stock import stock_state


def _active_product(slug: str) -> Product | None:
    return Product.objects.filter(slug=slug, active=True).select_related("category").first()


def product_page(request: HttpRequest, slug: str, *, form=None, error: str = "", errors: dict | None = None,
                 status: int = 200) -> HttpResponse:
    """`form` and `error`: the buy form sent back (captcha refused), keeping what the buyer typed;
    `errors`: the order's field errors (coupon, custom fields) shown beside their inputs."""
    product = _active_product(slug)
    if product is None:
        return render(request, "storefront/not_found_product.html", status=404)
    context = {
        **buy_form_context(request, product, form, errors), "tiers": tier_prices_list(product=product), "product": product,
        "stock": stock_state(product=product), "gateways": gateways_enabled(),
        "form": form or {}, "error": error, "captcha": captcha_new(),
    }
    if form is None and not (error or errors or context["captcha"] or context["coupon_typed"]) and status == 200:
        return page_cached(request, "storefront/product.html", context)
    return render(request, "storefront/product.html", context, status=status)


def product_stock(request: HttpRequest, slug: str) -> JsonResponse:
    product = _active_product(slug)
    if product is None:
        return JsonResponse({"error": "not_found"}, status=404)
    response = JsonResponse(stock_state(product=product).as_json())
    response["Cache-Control"] = "no-store"
    return response
