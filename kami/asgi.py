"""The ASGI application `kami serve --server uvicorn` runs (issue 9): a gateway's payment confirmed
on the event loop, everything else through the WSGI application (kami.wsgi) in threads.

    request ─► its body read whole, on the loop (a slow sender holds a socket, not a thread;
               past KAMI_REQUEST_MAX_BYTES a 413, unread)
            ├─ /pay/<gateway>/notify, a verified payment (notification_ready: no database, no
            │  network) ─► LoopBatcher (group commit; its transaction in the commit thread) ─► ack
            └─ anything else — every page, every other notification (forged, not a payment, a
               gateway that verifies over the network or is not in this process's cache yet) —
               ─► kami.wsgi.application in one of `threads` threads, as under waitress (_Threaded: the
               request handed to a thread once, its answer handed back once); a buyer's home or
               product page and the static files in one of `page_threads` instead (few: see below)

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
import io
import logging
import os
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "kami.settings")

from kami.wsgi import application as wsgi_application  # noqa: E402  (sets Django up)

from django.conf import settings  # noqa: E402
from django.db import DatabaseError  # noqa: E402

from kami.api.lean import NOTIFY_PATH, PAGE_PATH  # noqa: E402
from kami.core.edge import query_text  # noqa: E402
from kami.core.inbound import Inbound  # noqa: E402
from kami.core.logcontext import HEADER as REQUEST_ID_HEADER, request_id_start  # noqa: E402
from kami.core.middleware import body_limit, too_large_text  # noqa: E402
from kami.core.net import client_ip_of, forwarding_believed  # noqa: E402
from kami.fulfilment.batch_loop import LoopBatcher, threads_done, with_connections  # noqa: E402
from kami.fulfilment.notify import notification_ready, ready_confirmed, ready_failed  # noqa: E402

log = logging.getLogger("kami.serve")

SPOOL_BYTES = 512 * 1024  # a body larger than this waits on disk, as under waitress
WHOLE_BYTES = 256 * 1024  # an answer up to this size goes back to the loop in one handoff


class Application:
    """`threads`: the WSGI application's threads (the back office, the API, every notification the
    loop does not confirm itself, every other page), and as many for confirms that run alone.
    `page_threads`: the threads of GET and HEAD of the home and product pages and of static files.

    Why two pools: those pages and files are the storefront's load, and pure CPU work in this
    process (a cached page, a file WhiteNoise holds). Of the GIL only one thread runs at a time,
    and every thread more in line for it made each page dearer: at 16 clients, 16 threads served
    470-710 pages a second, 2 threads 1,020-1,220 (docs/performance.md, "Pages through one
    handoff"). The rest waits on the network — a gateway's API, a download, an upload, a lock —
    and needs threads enough to wait side by side."""

    def __init__(self, wsgi=wsgi_application, *, threads: int = 16, page_threads: int = 2) -> None:
        self._wsgi_app, self._threads, self._page_threads = wsgi, threads, page_threads
        self._made = None  # (bridges, thread pool, batcher): made in the serving process, on its loop

    def _parts(self):
        if self._made is None:
            pool = ThreadPoolExecutor(self._threads, thread_name_prefix="kami-notify")
            bridges = (_Threaded(self._wsgi_app, threads=self._threads, name="kami-wsgi"),
                       _Threaded(self._wsgi_app, threads=self._page_threads, name="kami-page"))
            self._made = (bridges, pool, LoopBatcher(alone_in=pool))
        return self._made

    def close(self) -> None:
        """Stop this application's threads, each closing its database connections first (a test's
        end; a server process simply exits)."""
        if self._made is None:
            return
        (bridge, pages), pool, batcher = self._made
        self._made = None
        batcher.close()
        for executor, threads in ((bridge.executor, self._threads), (pages.executor, self._page_threads),
                                  (pool, self._threads)):
            threads_done(executor, threads)

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":  # `kami serve` runs it with lifespan off and no websockets
            return
        (bridge, pages), pool, batcher = self._parts()
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
            page = scope["method"] in ("GET", "HEAD") and (
                PAGE_PATH.match(scope["path"]) or scope["path"].startswith(settings.STATIC_URL))
            await (pages if page else bridge)(scope, body, receive, send)
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

class _Threaded:
    """The WSGI application in `threads` threads, each request handed over once.

    A thread runs the application with the body already read (wsgi.input), and gives the loop its
    whole answer at once when it ends within WHOLE_BYTES — a page, a static file, an API answer:
    one handoff each way. A longer answer (an export, a large download) is sent from the thread
    as it is made, each part waiting for the loop to take it (the connection's own flow control).
    Why not a2wsgi, which did this before: it handed every part over separately and waited for the
    loop each time (the head, each chunk, the end: three or four round trips a page), and threads
    waiting on the loop while others wanted the GIL made a page cost 2-3× its time in process
    (docs/performance.md, "Pages through one handoff").

    Each thread runs its requests in its own context, as a threaded server does (a thread of an
    executor starts with an empty one): Django keeps state per context (its cache connections, the
    active language), and in a fresh copy per request — a2wsgi's way — it opened the data dir's
    cache anew each time, 16 ms of CPU, 60 pages a second instead of 900."""

    def __init__(self, app, *, threads: int, name: str) -> None:
        self._app = app
        self.executor = ThreadPoolExecutor(threads, thread_name_prefix=name)

    async def __call__(self, scope, body, receive, send) -> None:
        loop = asyncio.get_running_loop()
        answer = _Answer(loop, receive, send)
        try:
            await loop.run_in_executor(self.executor, answer.made, self._app, _environ(scope, body))
        except _ClientGone:
            return  # a streamed answer stopped where its reader left
        finally:
            if answer.watching is not None:
                answer.watching.cancel()
        if not answer.streamed:
            await send(answer.head(whole=True))
            await send({"type": "http.response.body", "body": b"".join(answer.parts)})


async def _watch(receive, answer: "_Answer") -> None:
    """Marks `answer` gone when its client disconnects (the body was read whole before: the next
    message is the disconnect, or nothing until the answer is complete)."""
    while (await receive())["type"] != "http.disconnect":
        pass
    answer.gone = True


class _ClientGone(Exception):
    """Raised into a streamed answer's iteration when its client has left: an export stops
    reading and decrypting keys nobody will receive."""


class _Answer:
    """One request's answer, made in a thread (made) and sent on the loop."""

    def __init__(self, loop, receive, send) -> None:
        self._loop, self._receive, self._send = loop, receive, send
        self._status = self._headers = None
        self.parts: list[bytes] = []
        self._size, self.streamed, self.gone = 0, False, False
        self.watching = None  # a streamed answer's watch for its client's disconnect (_watch)

    def made(self, app, environ) -> None:
        body = app(environ, self._start_response)
        try:
            for part in body:
                self._write(part)
            if self.streamed:
                self._to_loop({"type": "http.response.body", "body": b""})
            elif self._status is None:
                raise RuntimeError("the WSGI application returned without calling start_response")
        finally:
            if hasattr(body, "close"):
                body.close()

    def _start_response(self, status: str, headers, exc_info=None):
        if exc_info is not None:
            try:
                if self.streamed:  # the head has gone: the error can only end the connection
                    raise exc_info[1].with_traceback(exc_info[2])
            finally:
                exc_info = None
        elif self._status is not None:
            raise RuntimeError("start_response called twice without exc_info")
        self._status, self._headers = status, headers
        self.parts, self._size = [], 0  # an error page replaces what an earlier start wrote
        return self._write

    def _write(self, part: bytes) -> None:
        if not part:
            return
        if self._status is None:
            raise RuntimeError("the WSGI application wrote before calling start_response")
        if self.streamed:
            self._to_loop({"type": "http.response.body", "body": part, "more_body": True})
            return
        self.parts.append(part)
        self._size += len(part)
        if self._size > WHOLE_BYTES:
            self.streamed = True
            # watched from here on only: a whole answer goes out at once, and nothing is left to stop
            self.watching = asyncio.run_coroutine_threadsafe(_watch(self._receive, self), self._loop)
            self._to_loop(self.head(whole=False))
            self._to_loop({"type": "http.response.body", "body": b"".join(self.parts), "more_body": True})
            self.parts = []

    def _to_loop(self, message) -> None:
        if self.gone:
            raise _ClientGone
        asyncio.run_coroutine_threadsafe(self._send(message), self._loop).result()

    def head(self, *, whole: bool) -> dict:
        code = int(self._status.split(" ", 1)[0])
        headers = [(name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in self._headers]
        if whole and code >= 200 and code not in (204, 304) and not any(name == b"content-length" for name, _ in headers):
            headers.append((b"content-length", str(self._size).encode()))  # not chunked: the size is known
        return {"type": "http.response.start", "status": code, "headers": headers}


def _environ(scope, body) -> dict:
    """The WSGI environ of an ASGI request whose body was read whole (PEP 3333's rules for each key).
    Header names holding an underscore are left out, as waitress, gunicorn and nginx leave them
    out: as CGI names `X_Forwarded_For` and `X-Forwarded-For` are one, a way to smuggle one header
    past a proxy as the other. Repeated headers are joined as Django joins them."""
    server = scope.get("server") or ("localhost", 80)
    environ = {
        "REQUEST_METHOD": scope["method"],
        "SCRIPT_NAME": scope.get("root_path", "").encode().decode("latin-1"),
        "PATH_INFO": scope["path"].encode().decode("latin-1"),
        "QUERY_STRING": scope["query_string"].decode("latin-1"),
        "SERVER_NAME": server[0],
        "SERVER_PORT": str(server[1] or 0),
        "SERVER_PROTOCOL": f"HTTP/{scope['http_version']}",
        "CONTENT_LENGTH": str(_size(body)),  # what was read: a chunked body has its length too
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": scope.get("scheme", "http"),
        "wsgi.input": body,
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": True,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
    }
    if client := scope.get("client"):
        environ["REMOTE_ADDR"], environ["REMOTE_PORT"] = client[0], str(client[1])
    for raw_name, raw_value in scope.get("headers") or ():
        name = raw_name.decode("latin-1")
        if "_" in name:
            continue
        if name == "content-length":
            continue  # the body's real size is above
        key = "CONTENT_TYPE" if name == "content-type" else "HTTP_" + name.upper().replace("-", "_")
        value = raw_value.decode("latin-1")
        if key in environ:
            value = f"{environ[key]}{'; ' if key == 'HTTP_COOKIE' else ', '}{value}"
        environ[key] = value
    return environ


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
    message = await receive()
    if message["type"] == "http.request" and not message.get("more_body", False):
        chunk = message.get("body", b"")
        return io.BytesIO(chunk) if len(chunk) <= limit else None  # a GET, a notification: one message
    body = tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES)
    size = 0
    while True:
        if message["type"] == "http.disconnect":
            body.close()
            return _GONE
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            body.close()
            return None
        body.write(chunk)
        if not message.get("more_body", False):
            break
        message = await receive()
    body.seek(0)
    return body


def _size(body) -> int:
    here = body.tell()
    end = body.seek(0, os.SEEK_END)
    body.seek(here)
    return end



async def _plain(send, status: int, text: str) -> None:
    content = text.encode()
    await send({"type": "http.response.start", "status": status, "headers": [
        (b"content-type", b"text/plain; charset=utf-8"), (b"content-length", str(len(content)).encode()),
        (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": content})


application = Application(threads=int(os.environ.get("KAMI_THREADS", "16")),
                          page_threads=int(os.environ.get("KAMI_PAGE_THREADS", "2")))
