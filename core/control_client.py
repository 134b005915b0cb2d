"""A client of the control socket: blocking, one connection per thread, no asyncio (the
CLI's quick commands start in a few milliseconds with it; the attached console reads its
event stream on a thread of its own)."""

from __future__ import annotations

import contextlib
import os
import select
import socket
import time
from pathlib import Path
from typing import Any

from watchkeeper.core.control_protocol import (
    CLOSED_IDLE,
    ControlFailed,
    ControlUnavailable,
    decode,
    encode,
    find_socket,
    idle_answer,
)

CONNECT_PATIENCE = 10.0  # a client without a timeout waits this long for a full queue


class Connection:
    """One blocking connection to a keeper's socket (the CLI and the attached console's
    command channel). Not thread-safe: give each thread its own.

    The keeper hangs up on a connection idle for long (control_conn); a request on it
    then goes out on a fresh connection, which is safe because the keeper read nothing
    of it from the old one."""

    def __init__(self, vault: Path, timeout: float = 10.0, role: str | None = None) -> None:
        self._vault = vault
        self._timeout: float | None = timeout
        # On every request, so a fresh connection (after an idle hang-up) is read-only too.
        self._role = {"role": role} if role is not None else {}
        self._connect()

    def _connect(self) -> None:
        path, self.record = find_socket(self._vault)
        self.pid: int | None = self.record.get("pid")
        deadline = time.monotonic() + (self._timeout or CONNECT_PATIENCE)
        while True:
            self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self._socket.settimeout(self._timeout)
            try:
                self._socket.connect(os.fsencode(path))
                break
            except BlockingIOError:
                # The keeper's queue of connections not yet accepted is full: it drains
                # as fast as the keeper's loop turns (a crowd of clients connecting).
                self._socket.close()
                if time.monotonic() < deadline:
                    time.sleep(0.005)
                    continue
                error: OSError = TimeoutError("its queue of new connections stayed full")
            except OSError as failed:
                self._socket.close()
                error = failed
            raise ControlUnavailable(
                f"keeper pid {self.pid} does not answer on {path}: {error.strerror or error}"
            ) from None
        self._file = self._socket.makefile("rb")

    def _reconnect(self) -> None:
        self.close()
        self._connect()

    def _hung_up(self) -> bool:
        """Between requests the keeper sends nothing; anything to read (its idle notice,
        the end of the stream) means it closed this connection."""
        poller = select.poll()  # not select.select: a console may hold fds past 1024
        poller.register(self._socket, select.POLLIN)
        return bool(poller.poll(0))

    def request(self, op: str, timeout: float | None = None, **args: Any) -> dict[str, Any]:
        """Send one request and return its answer; ControlFailed when it says ok: false."""
        if timeout is not None:
            self.settimeout(timeout)
        message = encode({"op": op, **args, **self._role})
        try:
            answer = self._unasked() or self._exchange(message)
            if answer.get("closed") == CLOSED_IDLE:
                # Hung up on for idling (before or as we sent): it read nothing of the
                # request, which goes out again on a fresh connection.
                self._reconnect()
                answer = self._unasked() or self._exchange(message)
            if answer.get("closed") == CLOSED_IDLE:
                raise ConnectionError(answer.get("error"))
        except (OSError, ValueError) as error:
            raise ControlUnavailable(f"keeper pid {self.pid} went away: {error}") from None
        if not answer.get("ok"):
            raise ControlFailed(str(answer.get("error", "the keeper refused")))
        return answer

    def _unasked(self) -> dict[str, Any] | None:
        """What the keeper said on this connection since its last answer, unasked: its
        idle notice, or its refusal of the connection as it came in (too many
        connections); None when it said nothing."""
        return self._last_word() if self._hung_up() else None

    def _exchange(self, message: bytes) -> dict[str, Any]:
        try:
            self._socket.sendall(message)
            return self.read()
        except (BrokenPipeError, ConnectionResetError):
            # Closed before the request arrived: what it said first is still there to
            # read (a refusal must not read as a keeper gone away).
            return self._last_word()

    def _last_word(self) -> dict[str, Any]:
        """The line a keeper left on a connection it closed, or its end taken as an
        idle hang-up."""
        try:
            return self.read()
        except (OSError, ValueError):
            return dict(idle_answer("the keeper closed the connection before the request"))

    def read(self) -> dict[str, Any]:
        """The next line from the keeper: an answer or, after subscribe, an event."""
        line = self._file.readline()
        if not line:
            raise ConnectionError("the keeper closed the connection")
        return decode(line)

    def settimeout(self, timeout: float | None) -> None:
        self._timeout = timeout
        self._socket.settimeout(timeout)

    def shutdown(self) -> None:
        """Wake a thread blocked in read() (it sees the end of the stream)."""
        with contextlib.suppress(OSError):
            self._socket.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self._file.close()
        self._socket.close()

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


def request(vault: Path, op: str, timeout: float = 10.0, **args: Any) -> dict[str, Any]:
    """One request on a fresh connection."""
    with Connection(vault, timeout) as connection:
        return connection.request(op, **args)


def subscribe(
    vault: Path, kinds: list[str] | None = None, role: str | None = None
) -> tuple[Connection, dict[str, Any]]:
    """Open an event stream: the connection (whose read() then blocks for each event)
    and the snapshot the keeper answered with."""
    connection = Connection(vault, role=role)
    args: dict[str, Any] = {"kinds": kinds} if kinds is not None else {}
    try:
        answer = connection.request("subscribe", **args)
    except BaseException:
        connection.close()
        raise
    connection.settimeout(None)
    return connection, answer["snapshot"]
