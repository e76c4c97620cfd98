"""Reading endpoints, their messages and attempts (for the back office and the API)."""
from __future__ import annotations

from django.db.models import QuerySet

from kami.core.errors import NotFound
from kami.webhooks.models import Endpoint, WebhookMessage


def endpoints_list() -> QuerySet[Endpoint]:
    return Endpoint.objects.order_by("id")


def endpoint_get(*, endpoint_id: int) -> Endpoint:
    endpoint = Endpoint.objects.filter(pk=endpoint_id).first()
    if endpoint is None:
        raise NotFound(f"no webhook endpoint #{endpoint_id}")
    return endpoint


def messages_list(*, endpoint_id: int, limit: int = 100) -> list[WebhookMessage]:
    """The endpoint's newest messages, each with its outbox row and its attempts (newest first)."""
    rows = (WebhookMessage.objects.filter(endpoint_id=endpoint_id).select_related("outbox")
            .prefetch_related("attempts").order_by("-id")[:limit])
    return list(rows)


def message_get(*, message_id: int) -> WebhookMessage:
    message = WebhookMessage.objects.select_related("outbox", "endpoint").filter(pk=message_id).first()
    if message is None:
        raise NotFound(f"no webhook message #{message_id}")
    return message
