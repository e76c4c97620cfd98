from django.urls import path, re_path

from kami.api import views

urlpatterns = [
    path("api/v1/orders", views.orders_create, name="api-orders-create"),
    path("api/v1/orders/<str:order_no>", views.orders_detail, name="api-orders-detail"),
    # With and without a trailing slash: gateways are configured by hand and both get pasted.
    re_path(r"^pay/(?P<gateway>[a-z0-9_-]+)/notify/?$", views.pay_notify, name="pay-notify"),
    path("healthz", views.healthz, name="healthz"),
]
