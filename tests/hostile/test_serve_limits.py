"""Issue 12, hostile clients against the real `kami serve` on loopback: slow senders (slowloris)
do not tie up the server, a 50 MB body to a notify endpoint is refused without being held in
memory, and a body past KAMI_REQUEST_MAX_BYTES is refused from its Content-Length, unread.

The default server (uvicorn running kami/asgi.py; waitress before) reads requests in its event
loop and gives a thread only a whole request, so slow senders cost it sockets; waitress used to
stop accepting at 100 of them. granian reads bodies in
its worker threads and has no body read timeout: it refuses oversized bodies early too, and
`kami serve --server granian` warns that it belongs behind a buffering proxy."""
from __future__ import annotations

import re
import socket
import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.test_security_deploy import Server, kami

pytestmark = [pytest.mark.sqlite_only, pytest.mark.slow]
MiB = 1024 * 1024
IMPORT_MAX = 64 * MiB  # the server's KAMI_IMPORT_MAX_BYTES: KAMI_REQUEST_MAX_BYTES is 65 MiB
SLOW_CLIENTS = 150  # more than waitress's default connection limit (100)


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> tuple[Path, str]:
    """A demo shop's data dir and its back office path."""
    data_dir = tmp_path_factory.mktemp("hostile") / "var"
    done = kami(data_dir, "demo", "--no-serve")
    assert done.returncode == 0, done.stderr[-3000:]
    return data_dir, re.search(r"Back office: http://[^/]+/([^/\s]+)/", done.stdout).group(1)


@pytest.fixture(scope="module")
def data_dir(demo) -> Path:
    return demo[0]


def start(data_dir: Path, *args: str) -> Server:
    return Server(data_dir, "--no-worker", *args, KAMI_SANDBOX="1", KAMI_IMPORT_MAX_BYTES=str(IMPORT_MAX))


@pytest.fixture(scope="module")
def default_server(data_dir):
    server = start(data_dir)
    yield server
    server.stop()


def peak_memory_kib(pid: int) -> int:
    """The process's peak resident memory (VmHWM), with its children's (granian's workers)."""
    total = 0
    for one in [pid, *_children(pid)]:
        for line in Path(f"/proc/{one}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                total += int(line.split()[1])
    return total


def _children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        children = task / "children"
        if children.exists():
            found += [int(c) for c in children.read_text().split()]
    return found


def post_head(path: str, length: int) -> bytes:
    return (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/x-www-form-urlencoded\r\n"
            f"Content-Length: {length}\r\n\r\n").encode()


def send_body(server: Server, path: str, size: int) -> tuple[bytes, int]:
    """POST `size` bytes (or as many as the server takes before it answers); (answer, bytes sent)."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=20) as conn:
        conn.sendall(post_head(path, size))
        sent, chunk = 0, b"a" * (256 * 1024)
        try:
            while sent < size:
                conn.sendall(chunk[:size - sent])
                sent += min(len(chunk), size - sent)
        except OSError:  # refused and closed while we were still sending: fine, if it said so
            pass
        return _answer(conn), sent


def _answer(conn: socket.socket) -> bytes:
    """What the server answered, until it closed the connection (at most 64 KiB)."""
    got = b""
    try:
        while len(got) < 65536 and (part := conn.recv(4096)):
            got += part
    except OSError:
        pass
    return got


class SlowSenders:
    """`count` connections sending a request a byte at a time: half never finish their headers,
    half declared a body and dribble it."""

    def __init__(self, server: Server, count: int):
        self.conns, self.stop = [], threading.Event()
        for i in range(count):
            conn = socket.create_connection(("127.0.0.1", server.port), timeout=5)
            conn.sendall(post_head("/pay/sandbox/notify", 10_000) if i % 2 else b"POST /pay/sandbox/notify HTTP/1.1\r\n")
            self.conns.append(conn)
        self.thread = threading.Thread(target=self._dribble, daemon=True)
        self.thread.start()

    def _dribble(self) -> None:
        for _ in range(200):  # bounded: at most ~100 s, stopped by the test long before
            for conn in self.conns:
                try:
                    conn.send(b"X-a: b\r\n"[:1])
                except OSError:
                    pass
            if self.stop.wait(0.5):
                return

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=10)
        for conn in self.conns:
            conn.close()


def timed(call):
    started = time.monotonic()
    result = call()
    return result, time.monotonic() - started


def notify_while_slow_senders(server: Server) -> list[tuple[int, float]]:
    slow = SlowSenders(server, SLOW_CLIENTS)
    try:
        time.sleep(1)  # they are all connected and dribbling
        answers = []
        for _ in range(3):
            response, took = timed(lambda: httpx.post(f"{server.base}/pay/sandbox/notify", content=b'{"order_no": "K1"}',
                                                      headers={"X-Sandbox-Signature": "0" * 64}, timeout=10))
            answers.append((response.status_code, took))
            health, took = timed(lambda: httpx.get(f"{server.base}/healthz", timeout=10))
            answers.append((health.status_code, took))
        return answers
    finally:
        slow.close()


def test_slow_senders_do_not_keep_a_notification_from_its_answer(default_server):
    # given 150 clients dribbling requests a byte every half second (more than waitress's 100)
    # when a gateway's notification and a health check arrive meanwhile
    answers = notify_while_slow_senders(default_server)
    # then each gets its answer at once: the forged notification its refusal, the check its 200
    assert [status for status, _ in answers] == [400, 200] * 3, answers
    assert max(took for _, took in answers) < 2, answers


def test_a_50_mb_notification_is_refused_without_being_held_in_memory(default_server):
    # given a server that has answered (its memory at rest)
    before = peak_memory_kib(default_server.proc.pid)
    # when a 50 MB body is posted to a notify endpoint (under the server's 65 MiB ceiling)
    answer, sent = send_body(default_server, "/pay/sandbox/notify", 50 * MiB)
    # then it is refused with 413, and the server's peak memory grew by far less than the body
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert b"at most 2,097,152 accepted" in answer
    assert peak_memory_kib(default_server.proc.pid) - before < 16 * 1024
    assert httpx.get(f"{default_server.base}/healthz", timeout=10).status_code == 200


@pytest.mark.parametrize("path", ["/lookup", "/buy/steam-50", "/api/v1/orders"])
def test_a_3_mib_buyer_request_is_refused_with_413(default_server, path):
    answer, _ = send_body(default_server, path, 3 * MiB)
    assert answer.startswith(b"HTTP/1.1 413") and b"at most 2,097,152 accepted" in answer, answer[:300]


def test_a_body_past_the_server_ceiling_is_refused_before_it_is_sent(default_server):
    # given a request declaring 100 MiB (KAMI_REQUEST_MAX_BYTES is 65 MiB)
    with socket.create_connection(("127.0.0.1", default_server.port), timeout=10) as conn:
        # when only its headers have been sent
        conn.sendall(post_head("/lookup", 100 * MiB))
        answer = _answer(conn)
    # then the answer is already there: 413, the body never read
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]


def test_granian_refuses_a_50_mb_notification_early_and_says_where_it_belongs(data_dir):
    pytest.importorskip("granian")
    server = start(data_dir, "--server", "granian")
    try:
        before = peak_memory_kib(server.proc.pid)
        answer, sent = send_body(server, "/pay/sandbox/notify", 50 * MiB)
        grown = peak_memory_kib(server.proc.pid) - before
        assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
        assert grown < 16 * 1024
        assert "reverse proxy that buffers request bodies" in server.output()
    finally:
        server.stop()


def test_a_2_gb_key_file_upload_is_refused_by_its_size_before_it_is_read(default_server, demo, tmp_path):
    # given a 2 GiB key file (sparse: nothing is written) posted to the back office's import form
    sparse = tmp_path / "keys.txt"
    with sparse.open("wb") as f:
        f.truncate(2 * 1024 * MiB)
    head = b"--x\r\nContent-Disposition: form-data; name=\"file\"; filename=\"keys.txt\"\r\n\r\n"
    length = len(head) + sparse.stat().st_size + len(b"\r\n--x--\r\n")
    with socket.create_connection(("127.0.0.1", default_server.port), timeout=10) as conn, sparse.open("rb") as f:
        conn.sendall((f"POST /{demo[1]}/keys/import/ HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                      f"Content-Type: multipart/form-data; boundary=x\r\nContent-Length: {length}\r\n\r\n").encode())
        # when the first 64 KiB of it are on their way
        try:
            conn.sendall(head + f.read(64 * 1024))
        except OSError:
            pass
        answer = _answer(conn)
    # then the server has already answered 413 from the declared size, and is still serving
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert httpx.get(f"{default_server.base}/healthz", timeout=10).status_code == 200
