"""kami/asgi.py's way into the WSGI application: each request handed to a thread once, its answer
handed back once (whole, or streamed when it is long), the environ built as PEP 3333 and waitress
build it, and the storefront's pages and static files in their own few threads. Driven as uvicorn
drives the application (scope, receive, send), with a WSGI application that shows what it got."""
from __future__ import annotations

import asyncio
import json
import threading

import pytest

import kami.asgi
from kami.asgi import Application

pytestmark = pytest.mark.sqlite_only


def _scope(method: str, path: str, headers=(), query: bytes = b"") -> dict:
    return {"type": "http", "method": method, "path": path, "raw_path": path.encode(), "query_string": query,
            "root_path": "", "scheme": "http", "http_version": "1.1", "server": ("127.0.0.1", 8000),
            "client": ("203.0.113.7", 51000), "headers": [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers]}  # lower case, as uvicorn gives them


def _call(wsgi, scope, parts=(b"",), *, leaves_after: int | None = None) -> list[dict]:
    """The ASGI messages the application sent for one request whose body came in `parts`; the
    client disconnects once `leaves_after` messages were sent (as uvicorn, receive then answers
    a disconnect; before, it waits)."""
    app = Application(wsgi, threads=3, page_threads=1)
    messages = iter([{"type": "http.request", "body": part, "more_body": i < len(parts) - 1}
                     for i, part in enumerate(parts)])
    sent: list[dict] = []
    left = None

    async def receive():
        if (message := next(messages, None)) is not None:
            return message
        await left.wait()
        return {"type": "http.disconnect"}

    async def send(message):
        sent.append(message)
        if leaves_after is not None and len(sent) >= leaves_after:
            left.set()

    async def go():
        nonlocal left
        left = asyncio.Event()
        await app(scope, receive, send)

    try:
        asyncio.run(go())
    finally:
        app.close()
    return sent


def _echo(environ, start_response):
    """The environ's strings and the body it read, as JSON; the thread it ran in."""
    shown = {k: v for k, v in environ.items() if isinstance(v, str) and k != "wsgi.url_scheme"}
    shown["body"] = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0)).decode()
    shown["thread"] = threading.current_thread().name
    start_response("200 OK", [("Content-Type", "application/json")])
    return [json.dumps(shown).encode()]


def _shown(messages) -> dict:
    return json.loads(b"".join(m.get("body", b"") for m in messages if m["type"] == "http.response.body"))


def test_a_small_answer_comes_back_whole_in_one_head_and_one_body_with_its_length():
    # given an application that answers in three parts, without a Content-Length
    def parts(environ, start_response):
        start_response("201 Created", [("X-Kami", "yes")])
        return [b"one ", b"", b"two ", b"three"]

    # when it answers a request
    messages = _call(parts, _scope("GET", "/x"))
    # then the loop got the head and the whole body once each, the length counted (no chunking)
    assert [m["type"] for m in messages] == ["http.response.start", "http.response.body"]
    assert messages[0]["status"] == 201
    assert (b"x-kami", b"yes") in messages[0]["headers"] and (b"content-length", b"13") in messages[0]["headers"]
    assert messages[1]["body"] == b"one two three" and not messages[1].get("more_body")


def test_a_long_answer_is_streamed_as_made_and_closed_in_its_thread():
    # given an application that makes 1 MiB in 64 KiB parts and records where its body was closed
    closed_in = []

    class Body:
        def __iter__(self):
            return (bytes([65 + i]) * 65536 for i in range(16))

        def close(self):
            closed_in.append(threading.current_thread().name)

    def long(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        return Body()

    # when it answers
    messages = _call(long, _scope("GET", "/export"))
    # then the head went first without a length, the parts followed as made, an empty last one ends it
    assert messages[0]["type"] == "http.response.start"
    assert not any(name == b"content-length" for name, _ in messages[0]["headers"])
    bodies = messages[1:]
    assert len(bodies) > 4 and all(m["more_body"] for m in bodies[:-1]) and bodies[-1] == {
        "type": "http.response.body", "body": b""}
    assert b"".join(m["body"] for m in bodies) == b"".join(bytes([65 + i]) * 65536 for i in range(16))
    assert closed_in == ["kami-wsgi_0"]


def test_a_streamed_answer_stops_when_its_client_leaves():
    # given an application that would stream 64 MiB, and counts what it made
    made = []

    def endless(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])

        def parts():
            for i in range(1024):
                made.append(i)
                yield b"k" * 65536
        return parts()

    # when the client disconnects after the third message
    messages = _call(endless, _scope("GET", "/export"), leaves_after=3)
    # then the application stopped soon after, rather than making the rest for nobody
    assert len(messages) >= 3 and len(made) < 16, len(made)


def test_the_environ_is_what_waitress_would_build_and_smuggled_header_names_are_dropped():
    # given a request with a chunked body (no Content-Length), a repeated header, two Cookie
    # lines, a non-ASCII path and query, and an underscore header that CGI would read as X-Forwarded-For
    headers = [("Host", "shop.example"), ("Content-Type", "text/plain"), ("Accept", "a"), ("Accept", "b"),
               ("Cookie", "a=1"), ("Cookie", "b=2"), ("X-Forwarded-For", "198.51.100.1"),
               ("X_Forwarded_For", "6.6.6.6"), ("Transfer-Encoding", "chunked")]
    scope = _scope("POST", "/p/卡密", headers, query="q=é".encode("latin-1"))
    # when it reaches the WSGI application in three body messages
    shown = _shown(_call(_echo, scope, parts=(b"he", b"ll", b"o")))
    # then the body is whole and its length known, and the environ holds each value as PEP 3333 says
    assert (shown["body"], shown["CONTENT_LENGTH"], shown["CONTENT_TYPE"]) == ("hello", "5", "text/plain")
    assert shown["PATH_INFO"] == "/p/卡密".encode().decode("latin-1") and shown["QUERY_STRING"] == "q=é"
    assert (shown["REQUEST_METHOD"], shown["SERVER_PROTOCOL"], shown["SERVER_PORT"]) == ("POST", "HTTP/1.1", "8000")
    assert (shown["REMOTE_ADDR"], shown["REMOTE_PORT"], shown["HTTP_HOST"]) == ("203.0.113.7", "51000", "shop.example")
    assert shown["HTTP_ACCEPT"] == "a, b" and shown["HTTP_COOKIE"] == "a=1; b=2"
    # and the underscore name is not merged into the real header
    assert shown["HTTP_X_FORWARDED_FOR"] == "198.51.100.1"


def test_an_error_page_replaces_what_was_started_and_an_exception_reaches_the_server():
    # given an application that starts an answer, then replaces it with an error (exc_info)
    def replaced(environ, start_response):
        start_response("200 OK", [])
        try:
            raise ValueError("drawn badly")
        except ValueError:
            import sys

            start_response("500 Internal Server Error", [("Content-Type", "text/plain")], sys.exc_info())
        return [b"sorry"]

    def broken(environ, start_response):
        raise RuntimeError("boom")

    # when each answers
    messages = _call(replaced, _scope("GET", "/x"))
    # then the error page is what went out; an exception goes up to the server (which answers 500)
    assert messages[0]["status"] == 500 and messages[1]["body"] == b"sorry"
    with pytest.raises(RuntimeError, match="boom"):
        _call(broken, _scope("GET", "/x"))


@pytest.mark.parametrize(("method", "path", "pool"), [
    ("GET", "/", "kami-page"), ("HEAD", "/p/steam-50", "kami-page"), ("GET", "/static/storefront/kami.css", "kami-page"),
    ("POST", "/", "kami-wsgi"), ("GET", "/o/abc", "kami-wsgi"), ("GET", "/p/a/b", "kami-wsgi"),
    ("GET", "/admin/", "kami-wsgi"), ("POST", "/static/x", "kami-wsgi"),
])
def test_the_storefront_pages_and_static_files_have_their_own_threads(method, path, pool):
    # when a request reaches the application
    shown = _shown(_call(_echo, _scope(method, path)))
    # then the buyer's home and product pages and the static files ran in the page threads, the rest in the others
    assert shown["thread"].rsplit("_", 1)[0] == pool


def test_a_body_in_one_message_is_not_spooled(monkeypatch):
    # given a spool that records its use
    made = []
    spool = kami.asgi.tempfile.SpooledTemporaryFile
    monkeypatch.setattr(kami.asgi.tempfile, "SpooledTemporaryFile", lambda **kw: made.append(kw) or spool(**kw))
    # when a request's body comes in one message, then in two
    one = _shown(_call(_echo, _scope("POST", "/x", [("Content-Length", "5")]), parts=(b"hello",)))
    two = _shown(_call(_echo, _scope("POST", "/x", [("Content-Length", "5")]), parts=(b"hel", b"lo")))
    # then only the second needed a spool file, and both bodies arrived whole
    assert one["body"] == two["body"] == "hello" and len(made) == 1
