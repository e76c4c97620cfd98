from django.apps import AppConfig


class PaymentsConfig(AppConfig):
    name = "kami.payments"
    label = "payments"
