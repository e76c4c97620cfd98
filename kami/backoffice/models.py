"""The back office keeps no data of its own: staff are Django users, roles are groups, and the
actions that are not "change a row" are the permissions below."""
from __future__ import annotations

from django.db import models


class Capability(models.Model):
    """A table-less model that only carries the back office's own permissions."""

    class Meta:
        managed = False
        default_permissions = ()
        permissions = [
            ("view_dashboard", "See the dashboard: sales, stock, queues"),
            ("reveal_keys", "Reveal a key's plaintext (audited)"),
            ("export_keys", "Export keys (audited)"),
            ("import_keys", "Import keys"),
            ("generate_keys", "Generate keys"),
            ("void_keys", "Void and restore keys"),
            ("refund_orders", "Refund orders"),
            ("fulfil_orders", "Fulfil orders by hand"),
            ("replace_keys", "Replace a key on an order"),
            ("flag_orders", "Flag and unflag orders"),
            ("resend_deliveries", "Resend an order's delivery"),
            ("handle_deliveries", "Retry or close deliveries in the queue"),
            ("manage_gateways", "Configure payment gateways"),
            ("manage_shop", "Change shop settings and alerts"),
            ("manage_staff", "Add staff, set roles, reset two-factor"),
            ("view_audit", "Read the audit log"),
        ]
