"""The home page: the catalogue, grouped by category (in the merchant's order, products without
one last), a category filter as plain links, a name search. It stays a handful of queries
whatever the number of products: one for the products, one for the categories, one for every
stock badge (storefront.stock.stock_states)."""
from __future__ import annotations

from dataclasses import dataclass
from itertools import groupby

from django.db.models import F
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from kami.catalog.models import Category, Product
from kami.catalog.services import price_for
from kami.payments.registry import gateways_enabled
from kami.storefront.captcha_check import captcha_enabled
from kami.storefront.stock import stock_states


@dataclass(frozen=True)
class Shelf:
    category: Category | None  # None: products in no category
    products: list[Product]


def home_page(request: HttpRequest, *, error: str = "", status: int = 200) -> HttpResponse:
    """`error`: a failed quick buy, shown above the catalogue."""
    query = request.GET.get("q", "").strip()[:100]
    category = request.GET.get("category", "").strip()[:64]
    products = _products(query=query, category=category)
    return render(request, "storefront/home.html", {
        "shelves": _shelves(products), "products": products, "gateways": gateways_enabled(), "q": query,
        "category": category, "categories": list(Category.objects.filter(products__active=True).distinct()),
        "searched": bool(query or category), "error": error,
        # With the captcha on, buying starts on the product page: one challenge per form shown.
        "quick_buy": not captcha_enabled()}, status=status)


def _products(*, query: str, category: str) -> list[Product]:
    products = (Product.objects.filter(active=True).select_related("category")
                .order_by(F("category__sort_order").asc(nulls_last=True), "category_id", "sort_order", "id"))
    if query:
        products = products.filter(name__icontains=query)
    if category:
        products = products.filter(category__slug=category)
    products = list(products)
    states = stock_states(products=products)
    for p in products:
        p.stock = states[p.pk]
        p.in_stock = p.stock.available
        p.unit_price = price_for(product=p, quantity=p.min_qty).unit
    return products


def _shelves(products: list[Product]) -> list[Shelf]:
    return [Shelf(category=group[0].category, products=group)
            for group in (list(g) for _, g in groupby(products, key=lambda p: p.category_id))]
