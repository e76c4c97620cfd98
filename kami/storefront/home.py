"""The home page: the catalogue, grouped by category (in the merchant's order, products without
one last), a category filter as plain links, a name search. It stays a handful of queries
whatever the number of products: one for the products, one for every stock badge
(storefront.stock.stock_states), one for the gateways, and one for the categories only when a
filter hides some products. The page drawn from them is cached (storefront.fragments) unless
it answers a search or a failed quick buy; a cached page costs the two or three prepared
statements of storefront.reads.catalogue_state instead."""
from __future__ import annotations

from dataclasses import dataclass
from itertools import groupby

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from kami.catalog.models import Category, Product
from kami.catalog.services import price_for
from kami.payments.registry import gateways_enabled
from kami.storefront.captcha_check import captcha_enabled
from kami.storefront.fragments import page_cached
from kami.storefront.reads import catalogue_state
from kami.storefront.stock import stock_states


@dataclass(frozen=True)
class Shelf:
    category: Category | None  # None: products in no category
    products: list[Product]


def home_page(request: HttpRequest, *, error: str = "", status: int = 200) -> HttpResponse:
    """`error`: a failed quick buy, shown above the catalogue."""
    query = request.GET.get("q", "").strip()[:100]
    category = request.GET.get("category", "").strip()[:64]
    if error or query or status != 200:  # what the buyer typed stays out of the cache
        return render(request, "storefront/home.html", _context(query=query, category=category, error=error), status=status)
    # A category filter is in the key's path; what it shows comes from every product on sale.
    return page_cached(request, "storefront/home.html", state=catalogue_state(), state_again=catalogue_state,
                       context=lambda: _context(query="", category=category, error=""))


def _context(*, query: str, category: str, error: str) -> dict:
    products = _products(query=query, category=category)
    return {
        "shelves": _shelves(products), "gateways": gateways_enabled(), "q": query, "category": category,
        "categories": _categories(products) if not (query or category) else _categories_on_sale(),
        "searched": bool(query or category), "error": error,
        # With the captcha on, buying starts on the product page: one challenge per form shown.
        "quick_buy": not captcha_enabled()}


def _products(*, query: str, category: str) -> list[Product]:
    products = Product.objects.filter(active=True).select_related("category")
    if query:
        products = products.filter(name__icontains=query)
    if category:
        products = products.filter(category__slug=category)
    products = sorted(products, key=_shelf_order)  # here, not in SQL: a simpler statement to build each time
    states = stock_states(products=products)
    for p in products:
        p.stock = states[p.pk]
        p.in_stock = p.stock.available
        p.unit_price = price_for(product=p, quantity=p.min_qty).unit
    return products


def _shelf_order(product: Product) -> tuple:
    """Categories in their own order (sort_order, id), products in none last; then the products'."""
    c = product.category
    return (c is None, c.sort_order if c else 0, c.pk if c else 0, product.sort_order, product.pk)


def _categories(products: list[Product]) -> list[Category]:
    """With no filter every active product is on the page: the categories on sale are theirs,
    in the categories' own order (Category.Meta), with no query."""
    found = {p.category_id: p.category for p in products if p.category_id is not None}
    return sorted(found.values(), key=lambda c: (c.sort_order, c.pk))


def _categories_on_sale() -> list[Category]:
    return list(Category.objects.filter(products__active=True).distinct())


def _shelves(products: list[Product]) -> list[Shelf]:
    return [Shelf(category=group[0].category, products=group)
            for group in (list(g) for _, g in groupby(products, key=lambda p: p.category_id))]
