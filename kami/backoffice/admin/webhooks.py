"""The webhook endpoints pages (kami.backoffice.pages.webhooks), registered on the back office site."""
from __future__ import annotations

from kami.backoffice.pages import webhooks
from kami.backoffice.site import site

site.register_view("webhooks/", webhooks.webhooks_page, "webhooks")
site.register_view("webhooks/<int:endpoint_id>/", webhooks.webhook_detail, "webhook_detail")
site.register_view("webhooks/<int:endpoint_id>/enable/", webhooks.webhook_enable, "webhook_enable")
site.register_view("webhooks/<int:endpoint_id>/disable/", webhooks.webhook_disable, "webhook_disable")
site.register_view("webhooks/<int:endpoint_id>/rotate/", webhooks.webhook_rotate, "webhook_rotate")
site.register_view("webhooks/<int:endpoint_id>/delete/", webhooks.webhook_delete, "webhook_delete")
site.register_view("webhooks/<int:endpoint_id>/redeliver-failed/", webhooks.webhook_redeliver_failed,
                   "webhook_redeliver_failed")
site.register_view("webhooks/<int:endpoint_id>/events/<int:message_id>/redeliver/", webhooks.webhook_message_redeliver,
                   "webhook_message_redeliver")
