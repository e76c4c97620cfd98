from django.apps import AppConfig


class StockConfig(AppConfig):
    name = "kami.stock"
    label = "stock"
