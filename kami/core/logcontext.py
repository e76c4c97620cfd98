"""A request id on every log line of a request, and the order number once one is known.

    request_ids(app)   WSGI wrapper (kami.wsgi, outermost: the lean notify path gets it too): the
                       id is the proxy's `X-Request-ID` when it is a plain token (Caddy and nginx
                       can set one, so their access log and ours share it), else a new random
                       one; it goes back to the client in `X-Request-ID`
    log_order(no)      called where a request learns its order (order page, notification)
    ContextFilter      logging filter on the console handler: puts `request_id` and `order_no` on
                       each record, which the JSON format writes as fields (kami.ops.logformat)

The values live in context variables: each request runs in its own thread (or task), so two
requests never see each other's id, and a worker thread outside any request has none.
"""
from __future__ import annotations

import logging
import re
import secrets
from contextvars import ContextVar

_request_id: ContextVar[str] = ContextVar("kami_request_id", default="")
_order_no: ContextVar[str] = ContextVar("kami_order_no", default="")
_GIVEN = re.compile(r"[A-Za-z0-9._-]{8,64}")  # anything else (a header injection, a kilobyte) is replaced
HEADER = "X-Request-ID"


def request_ids(app):
    def wrapped(environ, start_response):
        request_id = request_id_start(environ.get("HTTP_X_REQUEST_ID", ""))

        def start(status, headers, exc_info=None):
            headers = [(name, value) for name, value in headers if name.lower() != "x-request-id"]
            return start_response(status, [*headers, (HEADER, request_id)], exc_info)

        try:
            body = app(environ, start)
        except BaseException:
            _clear()
            raise
        if isinstance(body, _file_wrapper_type(environ)):
            _clear()
            return body  # the server's own file sending: handed back as it is (sendfile)
        return _Body(body)

    return wrapped


def request_id_start(given: str) -> str:
    """This request's id (the proxy's when it is a plain token, else a new one), set for its log lines."""
    request_id = given if _GIVEN.fullmatch(given) else secrets.token_hex(8)
    _request_id.set(request_id)
    _order_no.set("")
    return request_id


def _file_wrapper_type(environ) -> type | tuple:
    wrapper = environ.get("wsgi.file_wrapper")
    return wrapper if isinstance(wrapper, type) else ()


class _Body:
    """The response body as the app gave it; the ids stay set while it is sent (a streamed
    response logs with its id) and are cleared when the server closes it, as WSGI says it must."""

    def __init__(self, body):
        self._body = body

    def __iter__(self):
        return iter(self._body)

    def close(self) -> None:
        try:
            if hasattr(self._body, "close"):
                self._body.close()
        finally:
            _clear()


def _clear() -> None:
    _request_id.set("")
    _order_no.set("")


def log_order(order_no: str) -> None:
    """This request concerns `order_no`: its later log lines say so."""
    if _request_id.get():
        _order_no.set(order_no)


def current_request_id() -> str:
    return _request_id.get()


class ContextFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        request_id = _request_id.get()
        if request_id and not hasattr(record, "request_id"):
            record.request_id = request_id
        order_no = _order_no.get()
        if order_no and not hasattr(record, "order_no"):
            record.order_no = order_no
        return True
