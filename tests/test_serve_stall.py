"""A stalled SSE client of `watchkeeper serve`: a raw socket with a small receive buffer
that stops reading while a job prints ~5 MB. The server drops it (its drop counter in
/metrics rises), a client that reads keeps getting every event, and the keeper goes on
firing its other job. How late those fires are is bench/serve.py's to measure."""

from __future__ import annotations

import json
import socket
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

from conftest import run_cli, wait_for
from prometheus_client.parser import text_string_to_metric_families
from serve_kit import (
    EventReader,
    Served,
    add_token,
    servers,  # noqa: F401  (the fixture; tests name it as a parameter)
)

FLOOD = 50_000  # lines of 100 bytes: 5 MB of job output, one log_line event each
JOBS = f"""\
[jobs.flood]
command = ["{sys.executable}", "-c", "for n in range({FLOOD}): print(f'{{n:08d}}' + 'x' * 91)"]

[jobs.tick]
command = ["true"]
every = "200ms"
"""


def stalled_client(url: str, token: str) -> socket.socket:
    """An SSE connection whose reader takes the response head, then nothing more."""
    parts = urlsplit(url)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connect: the window
    sock.connect((parts.hostname, parts.port))
    sock.sendall(
        f"GET /events HTTP/1.1\r\nHost: {parts.netloc}\r\nAuthorization: Bearer {token}\r\n"
        "Accept: text/event-stream\r\n\r\n".encode()
    )
    head = b""
    while b"\r\n\r\n" not in head:
        head += sock.recv(1)
    assert head.startswith(b"HTTP/1.1 200"), head
    return sock


class Heard:
    def __init__(self) -> None:
        self.lines: list[int] = []
        self.resyncs: list[dict] = []
        self.finished: list[dict] = []

    def follow(self, events: Iterator[tuple[str, dict]]) -> None:
        for kind, data in events:
            if kind == "log_line" and data.get("source") == "flood":
                self.lines.append(int(data["line"][:8]))
            elif kind == "resync":
                self.resyncs.append(data)
            elif kind == "run_finished" and data.get("taskId") == "flood":
                self.finished.append(data)
                return


def by_line(reader: EventReader) -> Iterator[tuple[str, dict]]:
    while True:
        event = reader.next()
        yield event["event"], event["data"]


def chunked(reader: EventReader) -> Iterator[tuple[str, dict]]:
    """Each (kind, data) of an SSE stream, read in big chunks: a reader as quick as a
    browser's, where reading line by line would fall behind the flood on its own."""
    pending = b""
    while chunk := reader.response.read1(1 << 16):
        pending += chunk
        *whole, pending = pending.split(b"\n\n")
        for block in whole:
            fields = dict(line.split(b": ", 1) for line in block.split(b"\n") if b": " in line)
            if b"event" in fields:
                yield fields[b"event"].decode(), json.loads(fields[b"data"])


def dropped(served: Served, token: str) -> float:
    body = served.get("/metrics", token)[2].decode()
    families = {family.name: family for family in text_string_to_metric_families(body)}
    return families["watchkeeper_serve_sse_dropped"].samples[0].value


def test_a_stalled_sse_client_is_dropped_and_nobody_else_waits(
    make_vault, daemon, servers  # noqa: F811
) -> None:
    vault = make_vault(JOBS)
    daemon(vault)
    token = add_token(vault, "viewer", "read")
    served = servers.start(vault, "--sse-stall", "1")
    assert dropped(served, token) == 0
    quick, slow = EventReader(served.url, token), EventReader(served.url, token)
    assert quick.next()["event"] == slow.next()["event"] == "snapshot"
    stalled = stalled_client(served.url, token)
    wait_for(lambda: b"watchkeeper_serve_sse_clients 3" in served.get("/metrics", token)[2])
    # The quick one reads in big chunks (as a browser does); the slow one line by line,
    # slower than the flood comes, so it falls behind without ever stopping.
    heard = [Heard(), Heard()]
    followers = [
        threading.Thread(target=heard[0].follow, args=(chunked(quick),), daemon=True),
        threading.Thread(target=heard[1].follow, args=(by_line(slow),), daemon=True),
    ]
    for follower in followers:
        follower.start()
    ticks_before = _successes(vault, "tick")
    started = time.monotonic()
    result = run_cli("run", "flood", "--wait", "--vault", str(vault), timeout=120)
    assert result.returncode == 0, result.stderr
    for follower in followers:
        follower.join(timeout=60)

    # Neither reader was cut off: each got the lines in order up to the last and the end
    # of the run, and whatever it missed came as a resync (its backlog lost, or the
    # keeper's own subscriber backlog on a busy box).
    for one in heard:
        assert one.finished and one.finished[0]["status"] == "success"
        assert one.lines == sorted(set(one.lines)) and one.lines[-1] == FLOOD - 1
        assert len(one.lines) == FLOOD or one.resyncs
    wait_for(lambda: b"watchkeeper_serve_sse_clients 2" in served.get("/metrics", token)[2])
    assert dropped(served, token) >= 1
    stalled.settimeout(30)
    with stalled:
        while True:  # what the kernel held for it, then the end the server made
            try:
                if not stalled.recv(65536):
                    break
            except ConnectionResetError:
                break
    # The keeper kept its other schedule meanwhile.
    took = time.monotonic() - started
    wait_for(lambda: _successes(vault, "tick") > ticks_before + int(took / 0.2) // 2)
    quick.close()
    slow.close()


def _successes(vault: Path, job: str) -> int:
    result = run_cli("history", "--job", job, "--limit", "1000", "--json", "--vault", str(vault))
    assert result.returncode == 0, result.stderr
    return sum(1 for run in json.loads(result.stdout) if run["status"] == "success")
