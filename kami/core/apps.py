from django.apps import AppConfig


class CoreConfig(AppConfig):
    name = "kami.core"
    label = "core"
