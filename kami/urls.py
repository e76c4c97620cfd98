from django.urls import include, path

urlpatterns = [
    path("", include("kami.api.urls")),
    path("", include("kami.storefront.urls")),
]
