"""A real HTTP endpoint on 127.0.0.1 for the notification tests: records every request,
answers with the statuses it is given, and can hold its answers back."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class Endpoint:
    def __init__(self) -> None:
        self.requests: list[tuple[str, dict[str, Any]]] = []
        self.authorizations: list[str | None] = []
        self.statuses: list[int] = []  # answered in turn; then 200
        self.hold = threading.Event()  # cleared: every answer waits for it
        self.hold.set()
        self.arrived = 0  # requests received, answered or not
        self.port = 0
        self._lock = threading.Lock()

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def bodies(self) -> list[dict[str, Any]]:
        with self._lock:
            return [body for _path, body in self.requests]

    def _answer(self) -> int:
        with self._lock:
            return self.statuses.pop(0) if self.statuses else 200

    def _record(self, path: str, body: dict[str, Any]) -> None:
        with self._lock:
            self.requests.append((path, body))


@contextmanager
def endpoint() -> Iterator[Endpoint]:
    found = Endpoint()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            size = int(self.headers.get("Content-Length", "0"))
            body = json.loads(self.rfile.read(size) or b"{}")
            with found._lock:
                found.arrived += 1
            found.hold.wait(30)
            status = found._answer()
            found._record(self.path, body)
            with found._lock:
                found.authorizations.append(self.headers.get("Authorization"))
            self.send_response(status)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    found.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield found
    finally:
        found.hold.set()
        server.shutdown()
        server.server_close()
