from django.apps import AppConfig


class StorefrontConfig(AppConfig):
    name = "kami.storefront"
    label = "storefront"
