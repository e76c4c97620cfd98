from django.urls import path, re_path

from kami.api import views
from kami.api.merchant.api import api as merchant_api

urlpatterns = [
    path("api/v1/orders", views.orders_create, name="api-orders-create"),
    path("api/v1/orders/<str:order_no>", views.orders_detail, name="api-orders-detail"),
    # With and without a trailing slash: gateways are configured by hand and both get pasted.
    re_path(r"^pay/(?P<gateway>[a-z0-9_-]+)/notify/?$", views.pay_notify, name="pay-notify"),
    path("healthz", views.healthz, name="healthz"),
    # The merchant API (django-ninja): /api/v1/merchant/…, /api/v1/openapi.json, /api/v1/docs.
    path("api/v1/", merchant_api.urls),
]
