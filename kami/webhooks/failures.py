"""When an event runs out of attempts (days of failures: settings.KAMI_DELIVERY_BACKOFF_BY_CHANNEL),
its endpoint is disabled and the merchant alerted once. Registered with kami.delivery
(delivery_escalation_register) and run in the worker's recording transaction."""
from __future__ import annotations

import logging

from kami.core import clock
from kami.delivery.channels.webhook import webhook_host
from kami.delivery.models import OutboxMessage
from kami.delivery.services import admin_alert
from kami.webhooks.models import Endpoint, WebhookMessage
from kami.webhooks.services import endpoint_disable_locked

log = logging.getLogger("kami.webhooks")


def on_message_exhausted(message: OutboxMessage, error: str) -> None:
    record = WebhookMessage.objects.filter(outbox_id=message.pk).first()
    endpoint = Endpoint.objects.select_for_update().filter(pk=record.endpoint_id).first() if record else None
    if endpoint is None:
        log.warning("outbox #%s: webhook event gave up, its endpoint no longer exists", message.pk)
        return
    if not endpoint.enabled:
        return  # already disabled (by staff, or by an earlier event): alerted then, not again
    days = round((clock.now() - message.created_at).total_seconds() / 86400, 1)
    endpoint_disable_locked(endpoint=endpoint, reason=f"{record.event} {record.msg_id} failed {message.attempts} "
                                                      f"times over {days} days: {error}")
    log.error("webhook endpoint #%s disabled: %s failed %s times over %s days (%s)", endpoint.pk, record.msg_id,
              message.attempts, days, error)
    admin_alert(event="webhook_disabled", dedupe_key=f"{endpoint.pk}:{endpoint.disabled_at.isoformat()}",
                params={"endpoint": endpoint.pk, "host": webhook_host(endpoint.url), "msg_id": record.msg_id,
                        "attempts": message.attempts, "days": days, "error": error})
