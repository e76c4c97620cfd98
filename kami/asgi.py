"""The ASGI application `kami serve --server uvicorn` runs (issue 9): a gateway's payment confirmed
on the event loop, everything else through the WSGI application (kami.wsgi) in threads.

    request ─► its body read whole, on the loop (a slow sender holds a socket, not a thread;
               past KAMI_REQUEST_MAX_BYTES a 413, unread)
            ├─ /pay/<gateway>/notify, a verified payment (notification_ready: no database, no
            │  network) ─► LoopBatcher (group commit; its transaction in the commit thread) ─► ack
            └─ anything else — every page, every other notification (forged, not a payment, a
               gateway that verifies over the network or is not in this process's cache yet) —
               ─► kami.wsgi.application in one of `threads` threads (a2wsgi), as under waitress

Why: under a threaded WSGI server each notification costs a thread handoff, Django's handler and
the server's Python (waitress parses HTTP in Python): two thirds of the notify path's CPU at 64
senders (docs/performance.md). On the loop a verified payment costs its parsing and verifying,
then waits for its batch without a thread.

What the loop path answers is what the WSGI path answers: the same `notification_handle` rules
(kami/fulfilment/notify.py), the same acknowledgement, the request id (X-Request-ID), the client
address as kami.core.net decides it, and the headers Django's security middleware adds to the
notify path's responses (taken from those middlewares once, for a plain-http request).
"""
from __future__ import annotations

import asyncio
import contextvars
import functools
import logging
import os
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "kami.settings")

from kami.wsgi import application as wsgi_application  # noqa: E402  (sets Django up)

from django.conf import settings  # noqa: E402
from django.db import DatabaseError  # noqa: E402

from kami.api.lean import NOTIFY_PATH  # noqa: E402
from kami.core.edge import query_text  # noqa: E402
from kami.core.inbound import Inbound  # noqa: E402
from kami.core.logcontext import HEADER as REQUEST_ID_HEADER, request_id_start  # noqa: E402
from kami.core.middleware import body_limit, too_large_text  # noqa: E402
from kami.core.net import client_ip_of, forwarding_believed  # noqa: E402
from kami.fulfilment.batch_loop import LoopBatcher, threads_done, with_connections  # noqa: E402
from kami.fulfilment.notify import notification_ready, ready_confirmed, ready_failed  # noqa: E402

log = logging.getLogger("kami.serve")

SPOOL_BYTES = 512 * 1024  # a body larger than this waits on disk, as under waitress
REPLAY_CHUNK = 64 * 1024


class Application:
    """`threads`: the WSGI application's threads (pages, the back office, every notification the
    loop does not confirm itself), and as many for confirms that run alone."""

    def __init__(self, wsgi=wsgi_application, *, threads: int = 16) -> None:
        self._wsgi_app, self._threads = wsgi, threads
        self._made = None  # (WSGI bridge, thread pool, batcher): made in the serving process, on its loop

    def _parts(self):
        if self._made is None:
            from a2wsgi import WSGIMiddleware

            pool = ThreadPoolExecutor(self._threads, thread_name_prefix="kami-notify")
            bridge = WSGIMiddleware(_InThreadContext(self._wsgi_app), workers=self._threads)
            self._made = (bridge, pool, LoopBatcher(alone_in=pool))
        return self._made

    def close(self) -> None:
        """Stop this application's threads, each closing its database connections first (a test's
        end; a server process simply exits)."""
        if self._made is None:
            return
        bridge, pool, batcher = self._made
        self._made = None
        batcher.close()
        for executor in (bridge.executor, pool):
            threads_done(executor, self._threads)

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":  # `kami serve` runs it with lifespan off and no websockets
            return
        bridge, pool, batcher = self._parts()
        headers = scope.get("headers") or []
        declared = _header(headers, b"content-length")
        limit = settings.KAMI_REQUEST_MAX_BYTES
        if declared is not None and not declared.isdigit():
            await _plain(send, 400, "bad Content-Length\n")
            return
        # BodyLimitMiddleware's answer, given before the body is read rather than after: the
        # connection closes, and its unread bytes are never taken for a next request
        path_limit = min(limit, body_limit(scope["path"]) or limit)
        if declared is not None and int(declared) > path_limit:
            await _plain(send, 413, too_large_text(int(declared), path_limit))
            return
        body = await _body_read(receive, limit)
        if body is None:
            await _plain(send, 413, f"request body too large: at most {limit:,} bytes\n")
            return
        if body is _GONE:
            return
        try:
            if scope["method"] == "POST" and NOTIFY_PATH.match(scope["path"]):
                small = body.read() if _size(body) <= settings.DATA_UPLOAD_MAX_MEMORY_SIZE else None
                if small is not None and await self._notify(scope, headers, small, send, pool, batcher):
                    return
                body.seek(0)
            await bridge(scope, _replay(body, receive), send)
        finally:
            body.close()

    async def _notify(self, scope, headers, body: bytes, send, pool, batcher) -> bool:
        """Confirm a verified payment here; False when the WSGI path must take the request."""
        request_id = request_id_start(_header(headers, b"x-request-id") or "")
        peer = (scope.get("client") or ("",))[0]
        believed = forwarding_believed(peer, _inbound_headers(headers))
        inbound = Inbound(method="POST", headers=believed, query=query_text(scope["query_string"]), body=body,
                          remote_addr=client_ip_of(peer, believed.get("X-Forwarded-For", ""))[:64])
        gateway_name = scope["path"].split("/")[2]
        ready = notification_ready(gateway_name=gateway_name, inbound=inbound)
        if ready is None:
            return False
        try:
            outcome = await batcher.confirm(gateway=gateway_name, notice=ready.notice, record=ready.record)
        except DatabaseError as exc:
            context = contextvars.copy_context()  # its log lines keep the request id
            reply = await asyncio.get_running_loop().run_in_executor(
                pool, functools.partial(context.run, with_connections, ready_failed, ready, exc))
        else:
            reply = ready_confirmed(ready, outcome)
        content = reply.content if isinstance(reply.content, bytes) else str(reply.content).encode()
        await send({"type": "http.response.start", "status": reply.status_code, "headers": [
            (b"content-type", (reply.content_type or f"text/html; charset={settings.DEFAULT_CHARSET}").encode("latin-1")),
            (b"content-length", str(len(content)).encode()), *_security_headers(),
            (REQUEST_ID_HEADER.lower().encode(), request_id.encode())]})
        await send({"type": "http.response.body", "body": content})
        return True


class _InThreadContext:
    """The WSGI application run in its thread's own context, as a threaded server runs it — not in
    the copy of the loop's context a2wsgi gives each request. Django keeps state per context
    (its cache connections, the active language): in a fresh copy per request it opened the
    data dir's cache anew each time, 16 ms of CPU, and pages served 60 a second instead of 900."""

    def __init__(self, app) -> None:
        self._app, self._local = app, threading.local()

    def __call__(self, environ, start_response):
        context = getattr(self._local, "context", None)
        if context is None:
            context = self._local.context = contextvars.Context()
        return _InContext(context, context.run(self._app, environ, start_response))


class _InContext:
    """A WSGI response body iterated and closed in `context` too (a streamed page, request ids)."""

    def __init__(self, context: contextvars.Context, body) -> None:
        self._context, self._body = context, body
        self._items = context.run(iter, body)

    def __iter__(self):
        return self

    def __next__(self):
        return self._context.run(next, self._items)

    def close(self) -> None:
        if hasattr(self._body, "close"):
            self._context.run(self._body.close)


@functools.cache
def _security_headers() -> tuple[tuple[bytes, bytes], ...]:
    """The headers the notify path's middleware (kami.api.lean.LEAN_MIDDLEWARE) adds to a response
    for a plain-http request, asked of those middlewares themselves."""
    from django.http import HttpRequest, HttpResponse
    from django.middleware.security import SecurityMiddleware

    from kami.core.middleware import SecurityHeadersMiddleware

    plain = HttpResponse()
    before = set(plain.headers)
    response = SecurityHeadersMiddleware(lambda request: SecurityMiddleware(lambda r: plain)(request))(HttpRequest())
    return tuple((name.lower().encode(), value.encode("latin-1")) for name, value in response.headers.items()
                 if name not in before)


def _header(headers, name: bytes) -> str | None:
    for key, value in headers:
        if key.lower() == name:
            return value.decode("latin-1")
    return None


def _inbound_headers(headers) -> dict[str, str]:
    """As Django shows a request's headers (title case, repeats joined by ", "), without the names
    waitress drops (an underscore: CGI would read it as a dash, a way to smuggle one header as another)."""
    joined: dict[str, str] = {}
    for key, value in headers:
        name = key.decode("latin-1")
        if "_" in name:
            continue
        name = name.title()
        text = value.decode("latin-1")
        joined[name] = f"{joined[name]}, {text}" if name in joined else text
    return joined


_GONE = object()


async def _body_read(receive, limit: int):
    """The whole body, spooled to disk past SPOOL_BYTES; None past `limit` bytes (a chunked body
    that declared no length); _GONE when the client left before sending it all."""
    body = tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES)
    size, more = 0, True
    while more:
        message = await receive()
        if message["type"] == "http.disconnect":
            body.close()
            return _GONE
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            body.close()
            return None
        body.write(chunk)
        more = message.get("more_body", False)
    body.seek(0)
    return body


def _size(body) -> int:
    here = body.tell()
    end = body.seek(0, os.SEEK_END)
    body.seek(here)
    return end


class _replay:
    """`receive` for the WSGI bridge: the body already read, in chunks, then the connection's own
    (which says when the client disconnects)."""

    def __init__(self, body, receive) -> None:
        self._body, self._receive = body, receive
        self._left, self._started = _size(body) - body.tell(), False

    async def __call__(self):
        if self._left or not self._started:
            chunk = self._body.read(REPLAY_CHUNK)
            self._started, self._left = True, self._left - len(chunk)
            return {"type": "http.request", "body": chunk, "more_body": self._left > 0}
        return await self._receive()


async def _plain(send, status: int, text: str) -> None:
    content = text.encode()
    await send({"type": "http.response.start", "status": status, "headers": [
        (b"content-type", b"text/plain; charset=utf-8"), (b"content-length", str(len(content)).encode()),
        (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": content})


application = Application(threads=int(os.environ.get("KAMI_THREADS", "16")))
