"""Subscribers of the control socket: one that hangs up, fan-out to many, kinds filters,
and slow ones dropped or resynchronised while the keeper keeps firing on time."""

from __future__ import annotations

import contextlib
import os
import select
import socket
import subprocess
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from conftest import Daemons, keeper_log, wait_for
from control_kit import new_vault, ops_keeper, socket_of, started_after

from watchkeeper.core import control_client
from watchkeeper.core.control_client import Connection
from watchkeeper.core.control_protocol import ControlFailed


@pytest.fixture(scope="module")
def ops(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, subprocess.Popen]]:
    """One keeper for the op round trips; each test uses jobs of its own."""
    yield from ops_keeper(tmp_path_factory.mktemp("ops"))


def test_a_subscriber_that_hangs_up_is_not_an_error(ops) -> None:
    vault, process = ops

    def connections() -> int:
        sockets = 0
        for fd in Path(f"/proc/{process.pid}/fd").iterdir():
            # Runs open and close descriptors meanwhile: one listed may be gone already.
            with contextlib.suppress(FileNotFoundError):
                sockets += os.readlink(fd).startswith("socket:")
        return sockets

    before = connections()
    connection, _ = control_client.subscribe(vault)
    connection.close()
    # Events for the gone subscriber: the keeper finds it gone when it writes them.
    control_client.request(vault, "run", job="echo", wait=True)
    wait_for(lambda: connections() <= before)
    log = keeper_log(vault)
    assert "control: ConnectionResetError" not in log and "control: BrokenPipeError" not in log


# ---- subscribers --------------------------------------------------------------------------


def read_until(
    connection: Connection, done: Callable[[list[dict[str, Any]]], bool], timeout: float = 10.0
) -> list[dict[str, Any]]:
    """Events until `done(events)` holds."""
    connection.settimeout(timeout)
    events: list[dict[str, Any]] = []
    while not done(events):
        events.append(connection.read())
    return events


def test_a_subscriber_sees_a_run_start_print_and_finish(ops) -> None:
    vault, process = ops
    connection, snapshot = control_client.subscribe(vault)
    with connection:
        assert snapshot["pid"] == process.pid and snapshot["jobs"]
        run_id = control_client.request(vault, "run", job="echo")["run_id"]

        def finished(events: list[dict]) -> bool:
            return any(e["event"] == "run_finished" and e["data"]["id"] == run_id for e in events)

        events = read_until(connection, finished)
    mine = [
        e
        for e in events
        if e["data"].get("id") == run_id
        or (e["event"] == "log_line" and e["data"].get("source") == "echo")
    ]
    assert [e["event"] for e in mine] == ["run_started", "log_line", "run_finished"]
    started, line, ended = (e["data"] for e in mine)
    assert started["taskId"] == "echo" and started["trigger"] == "manual" and started["pid"] > 0
    assert line["line"] == "hello-from-echo"
    assert ended["status"] == "success"


def test_kinds_filter_what_a_subscriber_gets(ops) -> None:
    vault, _ = ops
    connection, _ = control_client.subscribe(vault, kinds=["run_finished"])
    with connection:
        run_id = control_client.request(vault, "run", job="echo")["run_id"]
        events = read_until(connection, lambda e: any(x["data"].get("id") == run_id for x in e))
    assert {event["event"] for event in events} == {"run_finished"}
    with pytest.raises(ControlFailed, match="kinds must be a list"):
        control_client.subscribe(vault, kinds="run_started")  # type: ignore[arg-type]
    with pytest.raises(ControlFailed, match="unknown event kind\\(s\\) run_begun; kinds: "):
        control_client.subscribe(vault, kinds=["run_begun"])


def test_ten_subscribers_each_see_every_run_event(ops) -> None:
    vault, _ = ops
    subscribers = [
        control_client.subscribe(vault, kinds=["run_started", "run_finished"])[0] for _ in range(10)
    ]
    try:
        ids = [
            control_client.request(vault, "run", job="ok", wait=True)["run_id"] for _ in range(5)
        ]

        def all_finished(events: list[dict]) -> bool:
            done = {e["data"]["id"] for e in events if e["event"] == "run_finished"}
            return done.issuperset(ids)

        for connection in subscribers:
            events = read_until(connection, all_finished)
            for run_id in ids:
                kinds = [e["event"] for e in events if e["data"]["id"] == run_id]
                assert kinds == ["run_started", "run_finished"], (run_id, kinds)
    finally:
        for connection in subscribers:
            connection.close()


NOISY = 200  # lines a noisy run prints


def test_a_stalled_subscriber_is_dropped_while_the_keeper_keeps_firing(
    daemons: Daemons, tmp_path: Path
) -> None:
    line = "noise %g " + "x" * 100
    vault = new_vault(
        tmp_path,
        f"""
        [keeper]
        max_parallel = 8
        [jobs.noisy]
        command = ["seq", "-f", "{line}", "1", "{NOISY}"]
        every = "50ms"
        [jobs.beat]
        command = ["true"]
        every = "100ms"
        """,
    )
    daemons.start(vault)
    t0 = datetime.now(UTC)
    with (
        socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as stalled,
        socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as deaf,
    ):
        stalled.connect(os.fsencode(socket_of(vault)))
        stalled.sendall(b'{"op": "subscribe"}\n')  # and never reads a byte
        # Asks, and never reads the answers: megabytes of status, far past any buffer.
        deaf.connect(os.fsencode(socket_of(vault)))
        deaf.sendall(b'{"op": "status"}\n' * 3000)
        late, _ = control_client.subscribe(vault)  # reads once, far behind
        with late:
            # Past the late reader's backlog (5000 events) plus what its socket buffers hold.
            wait_for(lambda: len(started_after(vault, "noisy", t0)) * NOISY >= 12_000, timeout=20)
            late.settimeout(10)
            seen: list[dict[str, Any]] = []
            try:
                while not any(event["event"] == "resync" for event in seen):
                    seen.append(late.read())
            except ConnectionError:
                pass  # dropped itself: on a box too slow to read it in time
            resyncs = [event["data"] for event in seen if event["event"] == "resync"]

            wait_for(lambda: "control: dropped a subscriber" in keeper_log(vault), timeout=20)
            t1 = datetime.now(UTC)
            if resyncs:
                assert resyncs[0]["dropped"] > 0 and resyncs[0]["snapshot"]["jobs"]
                late.settimeout(10)
                assert late.read()["event"]  # still served after the resync
            else:
                assert keeper_log(vault).count("control: dropped a subscriber") >= 2

            # Both stalled connections are closed (after STALL_LIMIT): each sees the hang-up
            # without having to read what was queued for it first.
            for client in (stalled, deaf):
                poller = select.poll()
                poller.register(client, select.POLLHUP)
                assert poller.poll(3000), "the keeper kept a stalled connection open"

    # Meanwhile the keeper kept its 100 ms beat (half the slots at the very least).
    window = (t1 - t0).total_seconds()
    beats = [
        run
        for run in started_after(vault, "beat", t0)
        if datetime.fromisoformat(run["startedAt"]) <= t1
    ]
    assert len(beats) >= 0.5 * window / 0.1, (len(beats), window)
    assert control_client.request(vault, "status")["status"]["state"] == "RUNNING"
