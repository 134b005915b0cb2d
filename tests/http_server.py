"""A real HTTP server on 127.0.0.1 (a free port) that answers as a test tells it to:
statuses in turn, a delay, a body; `/echo` sends the request's headers back. It runs in
a thread of the test process, so a keeper in the test or in a daemon can call it."""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest


class Endpoint:
    def __init__(self) -> None:
        self.statuses: deque[int] = deque()  # answered in turn; then `status`
        self.status = 200
        self.delay = 0.0
        self.body = b"pong"
        self.requests: list[tuple[str, str, dict[str, str], bytes]] = []
        self.released = threading.Event()  # set: a delayed answer goes at once
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def close(self) -> None:
        self.released.set()
        self._server.shutdown()
        self._server.server_close()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                endpoint.requests.append((self.command, self.path, dict(self.headers), body))
                if endpoint.delay:
                    endpoint.released.wait(endpoint.delay)
                status = endpoint.statuses.popleft() if endpoint.statuses else endpoint.status
                reply = endpoint.body
                if self.path.startswith("/echo"):
                    reply = "".join(f"{k}: {v}\n" for k, v in self.headers.items()).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Length", str(len(reply)))
                    self.end_headers()
                    if self.command != "HEAD":
                        self.wfile.write(reply)
                except OSError:
                    pass  # the caller gave up (a timeout): nobody left to answer

            do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _answer

            def log_message(self, *args: object) -> None:
                pass

        return Handler


@pytest.fixture
def endpoint() -> Iterator[Endpoint]:
    """A local HTTP server for http jobs, closed after the test."""
    server = Endpoint()
    yield server
    server.close()
