"""A real HTTP server on 127.0.0.1 (any free port) in a thread: the base of every fake of an
outside service (payment gateways' APIs). Kami's clients talk to it over a socket exactly as they
would to the real thing."""
from __future__ import annotations

import ssl
import threading
from http.server import ThreadingHTTPServer

# For test clients of loopback servers: httpx.Client(..., verify=CLIENT_TLS). Made once: without
# it, every httpx client or httpx.get loads the system CA store again, ~20 ms of CPU each (issue 10).
CLIENT_TLS = ssl.create_default_context()


class LoopbackServer:
    def _serve(self, handler_class) -> None:
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler_class)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def url(self) -> str:
        return self.base_url

    def start(self):
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
