"""The log channel: admin alerts when no KAMI_ADMIN_EMAIL is set. The alert stays visible in the
outbox (and the back office); the log line is the operator's notification."""
from __future__ import annotations

import logging

from kami.delivery.channels import PermanentFailure
from kami.delivery.models import OutboxMessage

log = logging.getLogger("kami.alerts")


class LogChannel:
    name = "log"

    def send(self, message: OutboxMessage) -> None:
        if message.kind != "admin_alert":
            raise PermanentFailure(f"the log channel carries admin alerts only, not {message.kind!r}")
        payload = message.payload or {}
        log.warning("ALERT [%s] %s", payload.get("event", "?"), payload.get("subject", ""))
