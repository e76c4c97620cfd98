from django.apps import AppConfig


class AuditConfig(AppConfig):
    name = "kami.audit"
    label = "audit"
