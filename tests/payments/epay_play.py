"""Playing an Epay (易支付) site: configure Kami for it, sign notifications exactly as it does,
send them the ways real sites do (GET query, POST form), and look at what Kami kept."""
from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import urlencode

from django.test import Client

from kami.delivery.models import OutboxMessage
from kami.orders.models import OrderKey
from kami.payments.gateways.epay import epay_sign
from kami.payments.models import Notification, Payment
from kami.payments.services import gateway_configure
from kami.stock.models import Key
from tests.factories import add_keys  # noqa: F401 (re-exported for the tests here)

PID = "1001"
KEY = "Qk8sV2hLmN4pR7tX9zB3cD6fG1jH5kA0"
URL = "https://pay.example/"
FIXTURES = Path(__file__).parent / "fixtures"


def fixture(name: str) -> dict:
    return json.loads((FIXTURES / f"{name}.json").read_text(encoding="utf-8"))




def return_url(order: dict) -> str:
    """The URL a gateway is given to send the buyer back: the order page's, without its token."""
    assert order["token"] not in order["order_url"].split("?")[0]
    return f"http://testserver/orders/{order['order_no']}/return"


def enable_epay(*, pid: str = PID, key: str = KEY, url: str = URL, **extra: str) -> None:
    gateway_configure(name="epay", values={"pid": pid, "key": key, "url": url, **extra}, enable=True, actor="test")


def create_order(client: Client, product, *, quantity: int = 1, gateway: str = "epay") -> dict:
    response = client.post("/api/v1/orders", {"product": product.slug, "quantity": quantity, "email": "buyer@example.com",
                                              "gateway": gateway}, content_type="application/json")
    assert response.status_code == 201, response.content
    return response.json()


def stocked_order(client: Client, make_product, *, keys: int = 3, quantity: int = 1, **product) -> dict:
    item = make_product(**product)
    add_keys(item, [f"KEY-{item.slug}-{i}" for i in range(keys)])
    return create_order(client, item, quantity=quantity)


def paid_params(*, order_no: str, money: str, trade_no: str | None = None, status: str = "TRADE_SUCCESS",
                pid: str = PID, key: str = KEY, **extra: str) -> dict:
    """A notification exactly as the site builds it: fields, then sign and sign_type."""
    params = {"pid": pid, "trade_no": trade_no or f"2026{order_no}", "out_trade_no": order_no, "type": "alipay",
              "name": "Test product", "money": money, "trade_status": status, **extra}
    params["sign"] = epay_sign(params, key)
    params["sign_type"] = "MD5"
    return params


def notify(client: Client, params: dict | str, *, method: str = "GET", path: str = "/pay/epay/notify"):
    """Send a notification: a dict is encoded as the site does; a str is sent as it is."""
    encoded = params if isinstance(params, str) else urlencode(params)
    if method == "GET":
        return client.get(f"{path}?{encoded}")
    return client.post(path, data=encoded, content_type="application/x-www-form-urlencoded")


def nothing_delivered() -> bool:
    """No key handed to any order, no key email queued, no key sold."""
    return (not OrderKey.objects.exists() and not OutboxMessage.objects.filter(kind="order_keys").exists()
            and not Key.objects.exclude(status="available").exists())


def last_notification() -> Notification:
    return Notification.objects.order_by("-id").first()


def stored_text(row: Notification) -> str:
    """Everything a notification row keeps, as one string to search for secrets."""
    return json.dumps(row.headers, ensure_ascii=False) + row.body + row.error + row.order_no + row.trade_no


def payments_of(order_no: str) -> int:
    return Payment.objects.filter(order__order_no=order_no).count()
