"""Free TCP ports for the servers that tests and benchmarks start: one helper, shared (bench/
scripts import it too, with the repository root on sys.path)."""
from __future__ import annotations

import socket


def free_port() -> int:
    """A port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
