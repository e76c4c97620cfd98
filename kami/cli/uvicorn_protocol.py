"""uvicorn's HTTP protocol for `kami serve --server uvicorn`, with the one guard waitress has and
uvicorn lacks: a connection silent for KAMI_SERVE_IDLE_SECONDS is closed unless Kami is still
answering it. uvicorn only times out a kept-alive connection between requests; one that sends
nothing, or stops within its request line, headers or body, stayed open for ever, and a thousand
of them (KAMI_SERVE_CONNECTIONS) had every later visitor answered 503 (docs/security.md, slow
clients). A client that keeps dribbling bytes is not silent: bounded by the connection limit, as
under waitress.

It also sends each answer in one write: uvicorn writes the status line and headers, then the
body, each straight to the socket: two system calls and two TCP segments for a notification's
acknowledgement (docs/performance.md). `_Coalescing` holds what one turn of the event loop writes
and sends it at the turn's end."""
from __future__ import annotations

import asyncio

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


class _Coalescing:
    """The connection's transport, its writes held until the end of the loop's turn and sent as
    one (a response's head and body). Everything else is the transport's; closing sends what is
    held first, as the transport itself does."""

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport, self._loop = transport, loop
        self._held: list[bytes] | None = None

    def write(self, data: bytes) -> None:
        if self._held is None:
            self._held = [data]
            self._loop.call_soon(self._send)
        else:
            self._held.append(data)

    def _send(self) -> None:
        held, self._held = self._held, None
        if held and not self._transport.is_closing():
            self._transport.write(held[0] if len(held) == 1 else b"".join(held))

    def get_write_buffer_size(self) -> int:
        return self._transport.get_write_buffer_size() + sum(map(len, self._held or ()))

    def close(self) -> None:
        self._send()
        self._transport.close()

    def __getattr__(self, name: str):
        return getattr(self._transport, name)


class IdleClosingProtocol(HttpToolsProtocol):
    idle_seconds: float = 60.0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.transport = _Coalescing(transport, self.loop)  # type: ignore[assignment]
        self._heard = self.loop.time()
        self._watch = self.loop.call_later(self.idle_seconds, self._look)

    def data_received(self, data: bytes) -> None:
        self._heard = self.loop.time()
        super().data_received(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self._watch.cancel()
        super().connection_lost(exc)

    def _answering(self) -> bool:
        """The request is in whole and its answer not yet sent: Kami is working, not the client."""
        cycle = self.cycle
        return cycle is not None and not cycle.more_body and not cycle.response_complete

    def _look(self) -> None:
        if self.transport.is_closing():
            return
        quiet = self.loop.time() - self._heard
        if quiet >= self.idle_seconds and not self._answering():
            self.transport.close()
            return
        self._watch = self.loop.call_later(max(self.idle_seconds - quiet, 1.0), self._look)


def idle_closing(seconds: float) -> type[IdleClosingProtocol]:
    return type("IdleClosingProtocol", (IdleClosingProtocol,), {"idle_seconds": float(seconds)})
