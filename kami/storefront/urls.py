from django.urls import path

from kami.storefront import logo, lookup, pictures, product, recent, status, views

urlpatterns = [
    path("", views.home, name="home"),
    path("buy/<slug:slug>", views.buy, name="buy"),
    path("p/<slug:slug>", product.product_page, name="product"),
    path("p/<slug:slug>/stock", product.product_stock, name="product-stock"),
    path("orders/recent", recent.recent_orders, name="recent-orders"),  # before orders/<order_no>
    path("orders/<str:order_no>/status", status.order_status, name="order-status"),
    path("orders/<str:order_no>/return", views.order_return, name="order-return"),
    path("orders/<str:order_no>/keys.txt", views.order_keys_txt, name="order-keys-txt"),
    path("orders/<str:order_no>", views.order_page, name="order-page"),
    path("lookup", lookup.order_lookup, name="order-lookup"),
    path("shop/logo/<str:name>", logo.shop_logo, name="shop-logo"),
    path("pictures/<str:name>", pictures.product_picture, name="product-picture"),
    path("pay/sandbox/checkout/<str:order_no>", views.sandbox_checkout, name="sandbox-checkout"),
]
