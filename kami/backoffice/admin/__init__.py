"""Every model page of the back office, registered on `kami.backoffice.site.site`. One module
per area; importing this package registers them all (kami/urls.py does)."""
from kami.backoffice.admin import audit, catalog, keys, ops, orders, staff, webhooks  # noqa: F401
