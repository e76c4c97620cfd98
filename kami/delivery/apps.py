from django.apps import AppConfig


class DeliveryConfig(AppConfig):
    name = "kami.delivery"
    label = "delivery"
