from django.apps import AppConfig


class CliConfig(AppConfig):
    name = "kami.cli"
    label = "cli"
