from django.apps import AppConfig


class ApiConfig(AppConfig):
    name = "kami.api"
    label = "api"
