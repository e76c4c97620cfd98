from django.apps import AppConfig
from django.db.models.signals import post_migrate


class BackofficeConfig(AppConfig):
    name = "kami.backoffice"
    label = "backoffice"
    verbose_name = "Back office"

    def ready(self):
        from kami.staff.roles import roles_sync_on_migrate

        # After `migrate` (and after a test flush): the role groups get their permissions, which
        # exist by then because this app comes last in INSTALLED_APPS.
        post_migrate.connect(roles_sync_on_migrate, sender=self, dispatch_uid="kami.backoffice.roles")
