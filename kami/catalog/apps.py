from django.apps import AppConfig


class CatalogConfig(AppConfig):
    name = "kami.catalog"
    label = "catalog"
