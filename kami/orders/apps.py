from django.apps import AppConfig


class OrdersConfig(AppConfig):
    name = "kami.orders"
    label = "orders"
