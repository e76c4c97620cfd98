from django.apps import AppConfig


class FulfilmentConfig(AppConfig):
    name = "kami.fulfilment"
    label = "fulfilment"
