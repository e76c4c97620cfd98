from django.urls import path

from kami.storefront import views

urlpatterns = [
    path("", views.home, name="home"),
    path("buy/<slug:slug>", views.buy, name="buy"),
    path("orders/<str:order_no>", views.order_page, name="order-page"),
    path("pay/sandbox/checkout/<str:order_no>", views.sandbox_checkout, name="sandbox-checkout"),
]
