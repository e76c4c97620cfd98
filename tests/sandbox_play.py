"""Playing the sandbox gateway: sign and send notifications exactly as it does."""
from __future__ import annotations

from django.test import Client

from kami.payments.registry import gateway_get
from kami.payments.services import gateway_configure


def enable_sandbox():
    gateway_configure(name="sandbox", values={}, enable=True, actor="test")
    return gateway_get("sandbox")


def sandbox_notify(client: Client, *, order_no: str, amount: str, currency: str = "CNY", trade_no: str | None = None,
                   status: str = "paid", timestamp: int | None = None, signature: str | None = None):
    gw = gateway_get("sandbox")
    body = gw.notification_body(order_no=order_no, trade_no=trade_no or f"T-{order_no}", amount=amount,
                                currency=currency, status=status, timestamp=timestamp)
    return client.post("/pay/sandbox/notify", data=body, content_type="application/json",
                       HTTP_X_SANDBOX_SIGNATURE=signature if signature is not None else gw.sign(body))
