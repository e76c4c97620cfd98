"""The product page and its stock check. The form posts to the `buy` view; the amount is
always priced by catalog.services.price_for, the tier table here only shows the same tiers.
A page with an untouched form (no typed values, error, coupon or captcha) is cached
(storefront.fragments): its product, tiers, stock count and gateways are read each time, by the
prepared statements of storefront.reads.product_state."""
from __future__ import annotations

from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render

from kami.catalog.models import Product
from kami.catalog.services import tier_prices_list
from kami.payments.registry import gateways_enabled
from kami.storefront.buy_form import buy_form_context
from kami.storefront.captcha_check import captcha_enabled, captcha_new
from kami.storefront.fragments import page_cached
from kami.storefront.reads import product_state
from kami.storefront.stock import stock_state


def _active_product(slug: str) -> Product | None:
    return Product.objects.filter(slug=slug, active=True).select_related("category").first()


def product_page(request: HttpRequest, slug: str, *, form=None, error: str = "", errors: dict | None = None,
                 status: int = 200) -> HttpResponse:
    """`form` and `error`: the buy form sent back (captcha refused), keeping what the buyer typed;
    `errors`: the order's field errors (coupon, custom fields) shown beside their inputs."""
    if form is None and not (error or errors or request.GET.get("coupon", "").strip() or captcha_enabled()) and status == 200:
        return _pristine_page(request, slug)
    product = _active_product(slug)
    if product is None:
        return _not_found(request)
    return render(request, "storefront/product.html", _context(request, product, form, error, errors), status=status)


def _pristine_page(request: HttpRequest, slug: str) -> HttpResponse:
    """The page with an untouched form, cached: its state read by prepared statements."""
    state = product_state(slug=slug)
    if not state[0]:
        return _not_found(request)

    def context() -> dict:
        product = _active_product(slug)
        if product is None:
            raise Http404("no such product on sale")
        return _context(request, product, None, "", None)

    try:
        return page_cached(request, "storefront/product.html", state=state, state_again=lambda: product_state(slug=slug),
                           context=context)
    except Http404:  # taken off sale in the few ms since the state was read: the shop's page, as above
        return _not_found(request)


def _not_found(request: HttpRequest) -> HttpResponse:
    return render(request, "storefront/not_found_product.html", status=404)


def _context(request: HttpRequest, product: Product, form, error: str, errors: dict | None) -> dict:
    return {
        **buy_form_context(request, product, form, errors), "tiers": tier_prices_list(product=product), "product": product,
        "stock": stock_state(product=product), "gateways": gateways_enabled(),
        "form": form or {}, "error": error, "captcha": captcha_new(),
    }


def product_stock(request: HttpRequest, slug: str) -> JsonResponse:
    product = _active_product(slug)
    if product is None:
        return JsonResponse({"error": "not_found"}, status=404)
    response = JsonResponse(stock_state(product=product).as_json())
    response["Cache-Control"] = "no-store"
    return response
