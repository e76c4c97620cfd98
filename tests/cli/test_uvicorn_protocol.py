"""`kami serve`'s uvicorn protocol (kami/cli/uvicorn_protocol.py) hands the socket each answer in
one write: uvicorn itself writes the head, then the body, two system calls and two TCP segments a
notification's acknowledgement. uvicorn's own protocol runs here on a real event loop; what stands
in for the socket is a transport that records each write it is given."""
from __future__ import annotations

import asyncio

import uvicorn
from uvicorn.server import ServerState

from kami.cli.uvicorn_protocol import idle_closing


class SocketTransport(asyncio.Transport):
    """What the socket would be sent, one entry per write, and whether it was closed."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []
        self.closed = self.closed_by_server = False

    def write(self, data: bytes) -> None:
        assert not self.closed, "written after close"
        self.writes.append(bytes(data))

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def get_write_buffer_size(self) -> int:
        return 0

    def get_extra_info(self, name, default=None):
        return {"sockname": ("127.0.0.1", 8000), "peername": ("127.0.0.1", 50000)}.get(name, default)

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


async def app(scope, receive, send):
    """Answers with a head and a body of its own length; `?parts=N` streams the body in N pieces,
    one turn of the loop apart, and `?close=1` asks for the connection to be closed."""
    query = dict(part.split("=") for part in scope["query_string"].decode().split("&") if part)
    parts = int(query.get("parts", "1"))
    headers = [(b"content-length", str(parts * 3).encode())]
    if query.get("close"):
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    for i in range(parts):
        await send({"type": "http.response.body", "body": b"ok\n", "more_body": i < parts - 1})
        await asyncio.sleep(0)


def exchange(*requests: bytes) -> SocketTransport:
    async def run() -> SocketTransport:
        config = uvicorn.Config(app, lifespan="off", ws="none", log_config=None, access_log=False,
                                server_header=False, date_header=False)
        config.load()
        protocol = idle_closing(60)(config=config, server_state=ServerState(), app_state={})
        transport = SocketTransport()
        protocol.connection_made(transport)
        for request in requests:
            protocol.data_received(request)
            for _ in range(20):  # the answer's task, and the turns its writes wait for
                await asyncio.sleep(0)
        transport.closed_by_server = transport.closed
        protocol.connection_lost(None)  # the client goes (uvicorn then closes the transport)
        return transport
    return asyncio.run(run())


def test_an_answer_reaches_the_socket_in_one_write():
    # given a request on a kept-alive connection
    socket = exchange(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", b"GET /?parts=1 HTTP/1.1\r\nHost: x\r\n\r\n")
    # then each answer, head and body, was one write, whole
    assert len(socket.writes) == 2, socket.writes
    for written in socket.writes:
        assert written.startswith(b"HTTP/1.1 200 OK\r\n") and written.endswith(b"\r\n\r\nok\n"), written
    assert not socket.closed_by_server


def test_a_streamed_answer_is_sent_as_it_comes_and_a_closing_one_before_the_close():
    # given an answer whose body comes in three pieces, a turn of the loop apart, then one that
    # closes the connection
    socket = exchange(b"GET /?parts=3 HTTP/1.1\r\nHost: x\r\n\r\n", b"GET /?close=1 HTTP/1.1\r\nHost: x\r\n\r\n")
    # then nothing waited for the whole body: the head went with the first piece, each other piece
    # in its own turn; and the closing answer was sent before the connection was closed
    assert [w.endswith(b"ok\n") for w in socket.writes] == [True, True, True, True], socket.writes
    assert socket.writes[0].startswith(b"HTTP/1.1 200 OK\r\n") and socket.writes[1:3] == [b"ok\n", b"ok\n"]
    assert socket.writes[3].startswith(b"HTTP/1.1 200 OK\r\n") and b"connection: close" in socket.writes[3]
    assert b"".join(socket.writes).count(b"HTTP/1.1") == 2
    assert socket.closed_by_server
