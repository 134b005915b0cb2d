"""Control-socket clients that idle, half-send, pile up or stay attached: a fresh `status`
always gets through, idle and half-sent connections are answered and closed after their
deadlines, subscribers are not idle, a client the keeper hung up on asks again on a new
connection, and a keeper stopped with clients attached exits cleanly.

Against a real `watchkeeper --daemon` with the shipped limits, and against a real keeper
on a thread of its own whose control socket is started with short ones (so no test waits
out the 10 s idle limit)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import Daemons, final_records, lock_record, wait_for

from watchkeeper.core import control_client
from watchkeeper.core.client import SocketClient
from watchkeeper.core.config import load_config
from watchkeeper.core.control_client import Connection
from watchkeeper.core.control_conn import Limits
from watchkeeper.core.control_protocol import CLOSED_IDLE, MAX_CONNECTIONS, ControlFailed
from watchkeeper.core.control_server import ControlServer, start_control
from watchkeeper.core.events import Event
from watchkeeper.core.keeper import Keeper
from watchkeeper.core.lock import acquire

CONFIG = """
    [keeper]
    max_parallel = 16

    [jobs.tick]
    command = ["true"]
    every = "300ms"

    [jobs.ok]
    command = ["true"]

    [jobs.slow]
    command = ["sleep", "60"]
    overlap = "allow"
    """


def raw_connect(path: Path, first: bytes = b"") -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(os.fsencode(path))  # blocking: waits while the accept queue is full
    sock.settimeout(10)
    if first:
        sock.sendall(first)
    return sock


class Idler:
    """A raw client that sends `first` (or nothing) and then nothing more."""

    def __init__(self, path: Path, first: bytes) -> None:
        self.sock = raw_connect(path, first)
        self.sock.setblocking(False)
        self._received = b""
        self._ended = False

    def hung_up(self) -> list[dict[str, Any]] | None:
        """The answers the keeper sent before it closed us; None while it has not."""
        try:
            while not self._ended:
                chunk = self.sock.recv(65536)
                self._received += chunk
                self._ended = not chunk
        except BlockingIOError:
            return None
        except ConnectionResetError:
            self._ended = True  # after its answers: it hung up with our bytes unread
        return [json.loads(line) for line in self._received.splitlines()]


def read_to_end(sock: socket.socket, timeout: float = 10.0) -> list[dict[str, Any]]:
    sock.settimeout(timeout)
    data = b""
    # A reset after its answers: the keeper hung up with something of ours unread.
    with contextlib.suppress(ConnectionResetError):
        while chunk := sock.recv(65536):
            data += chunk
    return [json.loads(line) for line in data.splitlines()]


# ---- a real daemon, shipped limits -----------------------------------------------------------


def test_a_fresh_status_gets_through_300_idle_and_half_sent_clients(
    daemons: Daemons, make_vault
) -> None:
    vault = make_vault(CONFIG)
    process = daemons.start(vault)
    path = Path(lock_record(vault)["socket"])
    firsts = [b"", b'{"op": "sta', b"\n  \n"]  # silent, half a line, blank lines only
    clients = [Idler(path, firsts[index % 3]) for index in range(300)]
    try:
        answer = control_client.request(vault, "status", timeout=5)
        assert answer["status"]["pid"] == process.pid
        # The keeper keeps at most its limit open, the longest idle let go first.
        wait_for(lambda: sum(client.hung_up() is None for client in clients) < MAX_CONNECTIONS)
        for index, client in enumerate(clients):
            answers = client.hung_up()
            if answers is None:
                assert index >= 300 - MAX_CONNECTIONS, index
                continue
            assert len(answers) == 1 and answers[0]["ok"] is False, answers
            assert answers[0].get("closed") == CLOSED_IDLE or "not finished" in answers[0]["error"]
        assert control_client.request(vault, "jobs", timeout=5)["ok"] is True
    finally:
        for client in clients:
            client.sock.close()


def test_stopping_a_daemon_with_a_subscriber_and_an_idle_client_prints_no_traceback(
    daemons: Daemons, make_vault, tmp_path: Path
) -> None:
    vault = make_vault(CONFIG)
    process = daemons.start(vault)
    stream, _ = control_client.subscribe(vault)
    commands = Connection(vault)  # an attached console's command channel, between requests
    commands.request("status")
    stream.read()  # the subscription is live: a tick's event came through
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=20) == 0
    with pytest.raises((ConnectionError, OSError, ValueError)):
        while True:
            stream.read()  # the stream ends with the keeper
    stream.close()
    commands.close()
    output = (tmp_path / "daemon-0.out").read_text()
    assert "keeper stopped" in output
    assert "Traceback" not in output and "CancelledError" not in output, output


# ---- a real keeper on a thread, short limits -----------------------------------------------

SHORT = Limits(idle=0.6, partial=0.3, connections=8, subscribers=2)


class ThreadKeeper:
    """A real keeper serving its control socket with `limits`, on a thread and event loop
    of its own (the test talks to it with blocking sockets from the main thread)."""

    def __init__(self, vault: Path, limits: Limits) -> None:
        self.vault = vault
        self.limits = limits
        self._ready = threading.Event()
        self._failure: BaseException | None = None
        self._thread = threading.Thread(target=self._main, daemon=True)
        self.server: ControlServer | None = None

    def __enter__(self) -> ThreadKeeper:
        self._thread.start()
        assert self._ready.wait(30), "the keeper did not start"
        if self._failure is not None:
            raise self._failure
        return self

    def __exit__(self, *_: object) -> None:
        if not self._thread.is_alive():
            return  # stopped already
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(30)
        assert not self._thread.is_alive()

    def _main(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as error:
            self._failure = error
            self._ready.set()

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        keeper = Keeper(load_config(self.vault / "watchkeeper.toml"), acquire(self.vault))
        await keeper.start()
        server = await start_control(keeper, self.limits)
        assert server is not None
        self.server = server
        serving = asyncio.create_task(keeper.serve())
        self._ready.set()
        await self._stop.wait()
        await keeper.stop(grace=1)
        await serving
        await server.close()
        assert keeper.lock is not None
        keeper.lock.release()

    @property
    def path(self) -> Path:
        assert self.server is not None
        return self.server.path

    def open_connections(self) -> int:
        assert self.server is not None
        return len(self.server.connections)


@pytest.fixture
def short(make_vault) -> Iterator[ThreadKeeper]:
    with ThreadKeeper(make_vault(CONFIG), SHORT) as keeper:
        yield keeper


def test_idle_blank_and_half_sent_connections_are_answered_then_closed(
    short: ThreadKeeper,
) -> None:
    opened = time.monotonic()
    idle = raw_connect(short.path)
    blank = raw_connect(short.path, b"\n")
    half = raw_connect(short.path, b'{"op": "status"')
    answers = {name: read_to_end(sock) for name, sock in (("half", half), ("idle", idle))}
    for _ in range(3):  # blank lines do not keep a connection open
        with contextlib.suppress(OSError):
            blank.sendall(b"\n")
    answers["blank"] = read_to_end(blank)
    assert time.monotonic() - opened >= SHORT.partial
    assert answers["half"] == [{"ok": False, "error": "request not finished within 0.3s"}]
    idle_notice = {"ok": False, "error": "no request within 0.6s", "closed": CLOSED_IDLE}
    assert answers["idle"] == [idle_notice] and answers["blank"] == [idle_notice]
    wait_for(lambda: short.open_connections() == 0)
    for sock in (idle, blank, half):
        sock.close()


def test_a_request_that_arrives_in_time_is_answered_and_restarts_the_clock(
    short: ThreadKeeper,
) -> None:
    sock = raw_connect(short.path, b'{"op": "st')
    sock.sendall(b'atus"}\n')
    sock.settimeout(10)
    first = json.loads(sock.makefile("rb").readline())
    assert first["ok"] is True and "status" in first
    assert read_to_end(sock)[-1]["closed"] == CLOSED_IDLE  # then idle again, and let go
    sock.close()


def test_a_subscriber_is_not_idle_and_outlives_the_idle_limit(short: ThreadKeeper) -> None:
    stream, _ = control_client.subscribe(short.vault)
    # Connected after the subscriber: once it is let go, the subscriber has idled as long.
    assert read_to_end(raw_connect(short.path))[0]["closed"] == CLOSED_IDLE
    run_id = control_client.request(short.vault, "run", job="ok")["run_id"]
    stream.settimeout(10)
    while True:
        event = stream.read()
        if event["event"] == "run_finished" and event["data"]["id"] == run_id:
            break
    stream.close()


def test_a_subscriber_that_only_shuts_its_sending_side_keeps_its_stream(
    short: ThreadKeeper,
) -> None:
    # As `echo '{"op": "subscribe"}' | socat - UNIX-CONNECT:...` does once echo is done.
    sock = raw_connect(short.path, b'{"op": "subscribe", "kinds": ["run_finished"]}\n')
    sock.shutdown(socket.SHUT_WR)
    stream = sock.makefile("rb")
    assert json.loads(stream.readline())["ok"] is True
    run_id = control_client.request(short.vault, "run", job="ok")["run_id"]
    while (line := stream.readline()) and json.loads(line)["data"]["id"] != run_id:
        pass
    assert line, "the keeper ended the stream of a subscriber still reading"
    sock.close()


def test_a_client_the_keeper_closed_for_idling_asks_again_on_a_new_connection(
    short: ThreadKeeper,
) -> None:
    events: list[Event] = []
    console = SocketClient(short.vault)  # an attached console: commands and an event stream
    console.start(events.append)
    cli = Connection(short.vault)
    cli.request("status")
    # Both have idled past the limit once this later connection has been let go.
    assert read_to_end(raw_connect(short.path))[0]["closed"] == CLOSED_IDLE
    assert console.snapshot()["pid"] == os.getpid()
    run_id = console.run_now("ok")
    assert cli.request("status")["status"]["pid"] == os.getpid()
    wait_for(lambda: final_records(short.vault).get(run_id, {}).get("status") == "success")
    runs = [record for record in final_records(short.vault).values() if record["taskId"] == "ok"]
    assert len(runs) == 1  # asked again on a new connection, but run once
    assert not any(event.data.get("state") == "GONE" for event in events)
    cli.close()
    console.close()


def test_when_full_the_longest_idle_connection_makes_room(short: ThreadKeeper) -> None:
    idle = [raw_connect(short.path) for _ in range(SHORT.connections)]
    wait_for(lambda: short.open_connections() == SHORT.connections)
    assert control_client.request(short.vault, "status", timeout=5)["ok"] is True
    notice = read_to_end(idle[0])
    assert notice[0]["closed"] == CLOSED_IDLE and "to make room" in notice[0]["error"]
    for sock in idle:
        sock.close()


def test_subscribers_keep_room_for_requests_and_busy_connections_are_never_evicted(
    short: ThreadKeeper,
) -> None:
    streams = [control_client.subscribe(short.vault)[0] for _ in range(SHORT.subscribers)]
    with pytest.raises(ControlFailed, match=r"too many subscribers \(2\)"):
        control_client.subscribe(short.vault)
    waiting = SHORT.connections - SHORT.subscribers
    answers: list[str] = []

    def run_and_wait() -> None:
        try:
            answer = control_client.request(short.vault, "run", timeout=30, job="slow", wait=True)
            answers.append(answer["record"]["status"])
        except ControlFailed as error:
            answers.append(str(error))

    waiters = [threading.Thread(target=run_and_wait) for _ in range(waiting)]
    for waiter in waiters:
        waiter.start()
    assert short.server is not None
    server = short.server
    wait_for(lambda: server.connections.count("busy") == waiting)
    with pytest.raises(ControlFailed, match=r"too many connections \(8, none idle\)"):
        control_client.request(short.vault, "status", timeout=5)
    for stream in streams:
        stream.close()
    # Gone subscribers are noticed at once, not at the next event written to them.
    wait_for(lambda: short.open_connections() == waiting)
    assert control_client.request(short.vault, "status", timeout=5)["ok"] is True
    short.__exit__()  # stopping the keeper ends the slow runs; their waiters hear it
    for waiter in waiters:
        waiter.join(30)
    assert answers == ["cancelled"] * waiting, answers
