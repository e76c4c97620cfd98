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


def sandbox_notify_wsgi(*, order_no: str, amount: str, currency: str = "CNY", trade_no: str | None = None,
                        status: str = "paid", timestamp: int | None = None, signature: str | None = None):
    """The same notification, handed to a WSGI application (kami.wsgi.application: the lean
    notify handler production runs) as a WSGI server hands it over, close() included; returns
    (status code, body). Cheaper than the test client, which runs the full middleware."""
    raw, sig = _notification(order_no=order_no, amount=amount, currency=currency, trade_no=trade_no, status=status,
                             timestamp=timestamp, signature=signature)
    status, _, body = wsgi_post("/pay/sandbox/notify", raw, x_sandbox_signature=sig)
    return status, body


def wsgi_post(path: str, body: bytes, *, content_type: str = "application/json", remote_addr: str = "127.0.0.1",
              **headers: str) -> tuple[int, dict, bytes]:
    """One POST through `kami.wsgi.application` (the lean notify handler for /pay/<gw>/notify) as a
    WSGI server hands it over, close() included (request_finished); `headers` as keyword names
    (x_sandbox_signature=…). (status code, response headers, body). Also used by
    bench/notify_inprocess.py."""
    status, response_headers, answer = wsgi_request("POST", path, body, content_type=content_type,
                                                    remote_addr=remote_addr, **headers)
    return status, dict(response_headers), answer


def wsgi_request(method: str, path: str, body: bytes = b"", *, query: str = "", content_type: str = "",
                 remote_addr: str = "127.0.0.1", application=None, **headers: str) -> tuple[int, list, bytes]:
    """One request through `application` (default `kami.wsgi.application`, the dispatch production
    runs) as a WSGI server hands it over, close() included; `headers` as keyword names
    (accept_language=…, cookie=…). (status code, response headers as sent, in order, body)."""
    if application is None:
        from kami.wsgi import application
    environ = {"REQUEST_METHOD": method, "PATH_INFO": path, "QUERY_STRING": query,
               "SERVER_NAME": "testserver", "SERVER_PORT": "80", "SERVER_PROTOCOL": "HTTP/1.1",
               "HTTP_HOST": "testserver", "REMOTE_ADDR": remote_addr, "CONTENT_TYPE": content_type,
               "CONTENT_LENGTH": str(len(body)), "wsgi.input": io.BytesIO(body),
               "wsgi.errors": sys.stderr, "wsgi.url_scheme": "http", "wsgi.version": (1, 0),
               "wsgi.multithread": True, "wsgi.multiprocess": False, "wsgi.run_once": False,
               **{f"HTTP_{name.upper()}": value for name, value in headers.items()}}
    seen = {}

    def start_response(status, response_headers, exc_info=None):
        seen["status"], seen["headers"] = int(status.split()[0]), list(response_headers)

    result = application(environ, start_response)
    try:
        answer = b"".join(result)
    finally:
        if hasattr(result, "close"):
            result.close()
    return seen["status"], seen["headers"], answer


def sandbox_notify(client: Client, *, order_no: str, amount: str, currency: str = "CNY", trade_no: str | None = None,
                   status: str = "paid", timestamp: int | None = None, signature: str | None = None):
    body, sig = _notification(order_no=order_no, amount=amount, currency=currency, trade_no=trade_no, status=status,
                              timestamp=timestamp, signature=signature)
    return client.post("/pay/sandbox/notify", data=body, content_type="application/json", HTTP_X_SANDBOX_SIGNATURE=sig)
