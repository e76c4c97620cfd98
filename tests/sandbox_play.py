"""Playing the sandbox gateway: sign and send notifications exactly as it does."""
from __future__ import annotations

import io
import sys

from django.test import Client

from kami.payments.registry import gateway_get
from kami.payments.services import gateway_configure


def enable_sandbox():
    gateway_configure(name="sandbox", values={}, enable=True, actor="test")
    return gateway_get("sandbox")


def _notification(*, order_no, amount, currency, trade_no, status, timestamp, signature) -> tuple[bytes, str]:
    gw = gateway_get("sandbox")
    body = gw.notification_body(order_no=order_no, trade_no=trade_no or f"T-{order_no}", amount=amount,
                                currency=currency, status=status, timestamp=timestamp)
    return body, signature if signature is not None else gw.sign(body)


def sandbox_notify_wsgi(application, *, order_no: str, amount: str, currency: str = "CNY", trade_no: str | None = None,
                        status: str = "paid", timestamp: int | None = None, signature: str | None = None):
    """The same notification, handed to a WSGI application (kami.wsgi.application: the lean
    notify handler production runs) as a WSGI server hands it over, close() included; returns
    (status code, body). Cheaper than the test client, which runs the full middleware."""
    raw, sig = _notification(order_no=order_no, amount=amount, currency=currency, trade_no=trade_no, status=status,
                             timestamp=timestamp, signature=signature)
    return wsgi_post(application, "/pay/sandbox/notify", raw, {"HTTP_X_SANDBOX_SIGNATURE": sig})


def wsgi_post(application, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
    """POST a JSON `body` to `path` of a WSGI application as a WSGI server would (close()
    included: request_finished); `headers` as WSGI environ keys. (status code, body). Also used
    by bench/notify_inprocess.py."""
    environ = {"REQUEST_METHOD": "POST", "PATH_INFO": path, "QUERY_STRING": "",
               "SERVER_NAME": "testserver", "SERVER_PORT": "80", "SERVER_PROTOCOL": "HTTP/1.1",
               "HTTP_HOST": "testserver", "REMOTE_ADDR": "127.0.0.1", "CONTENT_TYPE": "application/json",
               "CONTENT_LENGTH": str(len(body)), "wsgi.input": io.BytesIO(body), **headers,
               "wsgi.errors": sys.stderr, "wsgi.url_scheme": "http", "wsgi.version": (1, 0),
               "wsgi.multithread": True, "wsgi.multiprocess": False, "wsgi.run_once": False}
    status_line = []
    result = application(environ, lambda s, response_headers, exc_info=None: status_line.append(s))
    try:
        answer = b"".join(result)
    finally:
        if hasattr(result, "close"):
            result.close()
    return int(status_line[0].split()[0]), answer


def sandbox_notify(client: Client, *, order_no: str, amount: str, currency: str = "CNY", trade_no: str | None = None,
                   status: str = "paid", timestamp: int | None = None, signature: str | None = None):
    body, sig = _notification(order_no=order_no, amount=amount, currency=currency, trade_no=trade_no, status=status,
                              timestamp=timestamp, signature=signature)
    return client.post("/pay/sandbox/notify", data=body, content_type="application/json", HTTP_X_SANDBOX_SIGNATURE=sig)
