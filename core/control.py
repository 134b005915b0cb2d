"""The control socket: how the CLI and an attached console talk to a running keeper.

Newline-delimited JSON over a Unix socket (mode 0600). A request is one line holding an
object with `op`; the answer is one line, `{"ok": true, ...}` or `{"ok": false, "error":
...}`. `subscribe` turns its connection into a stream of `{"event": kind, "data": ...}`
lines after the first answer (which carries a snapshot).

The keeper's loop is never at a client's mercy: a request is read whole (bounded, under
deadlines, see control_conn) before anything happens, each op is a quick call on the loop
(history is read in a thread), and a subscriber reads from its own bounded queue: one that
falls behind gets a resync with a fresh snapshot, one whose socket takes nothing for
STALL_LIMIT is dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import select
import socket
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core import history as hist
from core.control_conn import (
    CLOSED_IDLE,
    STALL_LIMIT,
    Connections,
    Limits,
    Slot,
    encode,
    error_answer,
    idle_answer,
    send,
)
from core.events import EVENT_KINDS
from core.lock import holder

if TYPE_CHECKING:
    from core.keeper import Keeper

SOCKET_NAME = "watchkeeper.sock"
SUBSCRIBER_BACKLOG = 5000
HISTORY_LIMIT = 1000
HISTORY_DEPTH = 10_000  # offset + limit: paging deeper is what the history files are for
# sun_path holds 108 bytes with the terminating NUL.
_SUN_PATH_MAX = 107
# Connections waiting to be accepted: a crowd connecting at once is queued, not refused.
BACKLOG = 512
CONNECT_PATIENCE = 10.0  # a client without a timeout waits this long for a full queue
OPS = ("status", "jobs", "history", "pause", "resume", "run", "cancel", "subscribe")


class ControlError(Exception):
    """Talking to the keeper did not work out."""


class ControlUnavailable(ControlError):
    """No keeper answers on this vault's control socket."""


class ControlFailed(ControlError):
    """The keeper answered `ok: false`; the message is its error."""


# ---- where the socket lives ----------------------------------------------------------


def socket_path_for(vault: Path) -> Path:
    """Logs/watchkeeper.sock, or when that path is too long for a Unix socket a short
    one in the user's runtime directory (the lock file records which)."""
    path = vault.resolve() / "Logs" / SOCKET_NAME
    if len(os.fsencode(path)) <= _SUN_PATH_MAX:
        return path
    digest = hashlib.sha256(os.fsencode(vault.resolve())).hexdigest()[:16]
    return _private_runtime_dir() / f"watchkeeper-{digest}.sock"


def _private_runtime_dir() -> Path:
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime and os.path.isdir(runtime):
        return Path(runtime)
    # The temp dir is shared: a directory of our own (0700) keeps others from the socket
    # and from planting one in its place.
    private = Path(tempfile.gettempdir()) / f"watchkeeper-{os.getuid()}"
    private.mkdir(mode=0o700, exist_ok=True)
    status = private.lstat()
    if status.st_uid != os.getuid() or status.st_mode & 0o077 or private.is_symlink():
        raise OSError(f"{private} is not a private directory of this user")
    return private


def find_socket(vault: Path) -> tuple[Path, dict]:
    """The running keeper's socket and lock record; ControlUnavailable when none runs."""
    record = holder(vault)
    if record is None:
        raise ControlUnavailable("no keeper is running on this vault")
    path = record.get("socket")
    if not isinstance(path, str):
        pid = record.get("pid", "?")
        raise ControlUnavailable(f"keeper pid {pid} has no control socket (an older keeper?)")
    return Path(path), record


# ---- the server ----------------------------------------------------------------------


class RequestError(Exception):
    """A request the keeper cannot act on; its message goes back to the client."""


class ControlServer:
    def __init__(self, keeper: Keeper, path: Path, limits: Limits | None = None) -> None:
        self.keeper = keeper
        self.path = path
        self.limits = limits or Limits()
        self._server: asyncio.Server | None = None
        self._inode: int | None = None
        self.connections = Connections(self.limits, self._respond)
        self.dropped_subscribers = 0

    async def start(self) -> None:
        """Bind under a temporary name, make it 0600, then rename it into place: the
        socket is never reachable with looser permissions, and a stale one is replaced."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # Never longer than the final name: a path that fits sun_path must bind.
        scratch = self.path.with_name(f".wk{os.getpid()}.tmp")
        with contextlib.suppress(FileNotFoundError):
            scratch.unlink()
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            listener.bind(os.fsencode(scratch))
            os.chmod(scratch, 0o600)
            os.replace(scratch, self.path)
            listener.listen(BACKLOG)
            listener.setblocking(False)
            self._inode = self.path.stat().st_ino
            self._server = await asyncio.start_unix_server(
                self.connections.handle, sock=listener, limit=self.limits.request, backlog=BACKLOG
            )
        except BaseException:
            listener.close()
            with contextlib.suppress(FileNotFoundError):
                scratch.unlink()
            raise

    async def close(self) -> None:
        if self._server is None:
            return
        self._server.close()
        await self.connections.close()
        # Only our own socket: a keeper that started after us may have put its own there.
        with contextlib.suppress(OSError):
            if self.path.stat().st_ino == self._inode:
                self.path.unlink()
        self._server = None

    async def _respond(
        self, slot: Slot, line: bytes, writer: asyncio.StreamWriter
    ) -> dict[str, Any] | None:
        try:
            request = _parse(line)
            if request["op"] == "subscribe":
                await self._stream(slot, request, writer)
                return None
            return await self._answer(request)
        except RequestError as error:
            return error_answer(str(error))
        except (ConnectionError, TimeoutError):
            raise  # the client left or stopped reading: the connection is closed
        except Exception as error:  # a bug in an op must not take the keeper down
            self.keeper.log.error(f"control: {type(error).__name__}: {error}")
            return error_answer(f"internal error: {type(error).__name__}: {error}")

    # ---- ops ------------------------------------------------------------------------

    async def _answer(self, request: dict[str, Any]) -> dict[str, Any]:
        keeper = self.keeper
        op = request["op"]
        if op == "status":
            return {"ok": True, "status": keeper.snapshot()}
        if op == "jobs":
            return {
                "ok": True,
                "jobs": [keeper.job_view(runtime) for runtime in keeper.jobs.values()],
            }
        if op == "history":
            return await self._history(request)
        if op == "pause":
            job = self._job(request, optional=True)
            changed = keeper.pause(job)
            return {"ok": True, "paused": job, "changed": changed, "state": keeper.state_word}
        if op == "resume":
            job = self._job(request, optional=True)
            missed = _flag(request, "missed", True)
            plan = keeper.resume_plan(job, missed)
            changed = False
            if not _flag(request, "preview", False):
                changed = keeper.resume(job, missed=missed)
            answer = {"ok": True, "plan": plan.to_json(), "state": keeper.state_word}
            return {**answer, "changed": changed}
        if op == "run":
            return await self._run(request)
        if op == "cancel":
            run_id = request.get("run_id")
            if not isinstance(run_id, str) or not run_id:
                raise RequestError("cancel needs run_id (a string)")
            if not keeper.cancel(run_id):
                raise RequestError(f"no run {run_id} in flight, queued or waiting to retry")
            return {"ok": True, "cancelled": run_id}
        raise RequestError(f"unknown op {op!r}; ops: {', '.join(OPS)}")

    def _job(self, request: dict[str, Any], optional: bool = False) -> str | None:
        job = request.get("job")
        if job is None and optional:
            return None
        if not isinstance(job, str):
            raise RequestError(f"{request['op']} needs job (a string)")
        if job not in self.keeper.jobs:
            known = ", ".join(self.keeper.jobs) or "none"
            raise RequestError(f"no job {job!r} in {self.keeper.config.path}; jobs: {known}")
        return job

    async def _run(self, request: dict[str, Any]) -> dict[str, Any]:
        job = self._job(request)
        assert job is not None
        if self.keeper.stopping:
            raise RequestError("the keeper is stopping: no new runs")
        run_id, finished = self.keeper.run_and_watch(job)
        if not _flag(request, "wait", False):
            return {"ok": True, "run_id": run_id}
        try:
            # shield: a client that hangs up must not cancel the keeper's own future.
            record = await asyncio.shield(finished)
        except asyncio.CancelledError:
            if finished.cancelled():
                raise RequestError(f"the keeper stopped before run {run_id} ended") from None
            raise
        return {"ok": True, "run_id": run_id, "record": record}

    async def _history(self, request: dict[str, Any]) -> dict[str, Any]:
        limit, offset = request.get("limit", 50), request.get("offset", 0)
        if not _count(limit) or not 1 <= limit <= HISTORY_LIMIT:
            raise RequestError(f"history limit must be 1..{HISTORY_LIMIT}")
        if not _count(offset) or offset + limit > HISTORY_DEPTH:
            raise RequestError(f"history offset + limit must stay within {HISTORY_DEPTH}")
        since = _optional_str(request, "since")
        try:
            query = hist.Query(
                job=_optional_str(request, "job"),
                status=_optional_str(request, "status"),
                since=datetime.fromisoformat(since) if since is not None else None,
                limit=offset + limit,
            )
        except ValueError as error:
            raise RequestError(f"history: {error}") from None
        if query.since is not None and query.since.tzinfo is None:
            raise RequestError("history since needs a time zone offset")
        directory = self.keeper.vault / "Logs" / "history"
        try:
            result = await asyncio.to_thread(hist.recent, directory, query)
        except (OverflowError, UnicodeEncodeError) as error:  # odd but valid JSON values
            raise RequestError(f"history: {error}") from None
        page = result.records[offset:]
        return {
            "ok": True,
            "runs": [record.to_json() for record in page],
            "bad_lines": result.bad_lines,
            "next_offset": offset + len(page) if len(result.records) == query.limit else None,
        }

    async def _stream(
        self, slot: Slot, request: dict[str, Any], writer: asyncio.StreamWriter
    ) -> None:
        kinds = request.get("kinds")
        if kinds is not None and not (
            isinstance(kinds, list) and all(isinstance(kind, str) for kind in kinds)
        ):
            raise RequestError("subscribe kinds must be a list of event names")
        wanted = set(kinds) if kinds is not None else None
        unknown = sorted((wanted or set()) - set(EVENT_KINDS))
        if unknown:
            raise RequestError(
                f"unknown event kind(s) {', '.join(unknown)}; kinds: {', '.join(EVENT_KINDS)}"
            )
        if not self.connections.subscribe(slot, writer):
            raise RequestError(f"too many subscribers ({self.limits.subscribers})")
        subscription = self.keeper.bus.subscribe(maxsize=SUBSCRIBER_BACKLOG)
        try:
            await send(writer, {"ok": True, "snapshot": self.keeper.snapshot()})
            while True:
                events = [await subscription.get()]
                while len(events) < 256 and (more := subscription.get_nowait()) is not None:
                    events.append(more)
                chunk = bytearray()
                for event in events:
                    if event.kind == "resync":
                        data = {**event.data, "snapshot": self.keeper.snapshot()}
                    elif wanted is not None and event.kind not in wanted:
                        continue
                    else:
                        data = event.data
                    chunk += encode({"event": event.kind, "data": data})
                if not chunk:
                    continue
                writer.write(bytes(chunk))
                try:
                    async with asyncio.timeout(STALL_LIMIT):
                        await writer.drain()
                except TimeoutError:
                    self.dropped_subscribers += 1
                    self.keeper.log.warning(
                        f"control: dropped a subscriber that read nothing for {STALL_LIMIT:g}s"
                    )
                    writer.transport.abort()  # close() would wait for it to read the backlog
                    return
        finally:
            subscription.close()


def _parse(line: bytes) -> dict[str, Any]:
    try:
        request = json.loads(line)
    except (ValueError, RecursionError) as error:  # UnicodeDecodeError is a ValueError
        raise RequestError(f"not JSON: {error}") from None
    if not isinstance(request, dict):
        raise RequestError('a request is a JSON object like {"op": "status"}')
    op = request.get("op")
    if not isinstance(op, str):
        raise RequestError(f"request needs op, one of: {', '.join(OPS)}")
    return request


def _flag(request: dict[str, Any], key: str, default: bool) -> bool:
    value = request.get(key, default)
    if not isinstance(value, bool):
        raise RequestError(f"{request['op']} {key} must be true or false")
    return value


def _count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _optional_str(request: dict[str, Any], key: str) -> str | None:
    value = request.get(key)
    if value is not None and not isinstance(value, str):
        raise RequestError(f"{request['op']} {key} must be a string")
    return value


async def start_control(keeper: Keeper, limits: Limits | None = None) -> ControlServer | None:
    """Serve the keeper's control socket and note its path in the lock record. A keeper
    without one still schedules: the CLI falls back to the state file and SIGHUP."""
    try:
        server = ControlServer(keeper, socket_path_for(keeper.vault), limits)
        await server.start()
    except OSError as error:
        keeper.log.error(f"control socket unavailable: {error}; CLI control falls back to SIGHUP")
        return None
    if keeper.lock is not None:
        keeper.lock.note(socket=str(server.path))
    keeper.log.info(f"control socket at {server.path}")
    return server


# ---- the client ----------------------------------------------------------------------


class Connection:
    """One blocking connection to a keeper's socket (the CLI and the attached console's
    command channel). Not thread-safe: give each thread its own.

    The keeper hangs up on a connection idle for long (control_conn); a request on it
    then goes out on a fresh connection, which is safe because the keeper read nothing
    of it from the old one."""

    def __init__(self, vault: Path, timeout: float = 10.0) -> None:
        self._vault = vault
        self._timeout: float | None = timeout
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
        message = encode({"op": op, **args})
        try:
            if self._hung_up():
                self._reconnect()
            try:
                self._socket.sendall(message)
                answer = self.read()
            except (BrokenPipeError, ConnectionResetError):
                answer = idle_answer("the keeper closed the connection before the request")
            if answer.get("closed") == CLOSED_IDLE:
                # Hung up on for idling just as we sent: it read nothing of the request.
                self._reconnect()
                self._socket.sendall(message)
                answer = self.read()
        except (OSError, ValueError) as error:
            raise ControlUnavailable(f"keeper pid {self.pid} went away: {error}") from None
        if not answer.get("ok"):
            raise ControlFailed(str(answer.get("error", "the keeper refused")))
        return answer

    def read(self) -> dict[str, Any]:
        """The next line from the keeper: an answer or, after subscribe, an event."""
        line = self._file.readline()
        if not line:
            raise ConnectionError("the keeper closed the connection")
        return json.loads(line)

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


def subscribe(vault: Path, kinds: list[str] | None = None) -> tuple[Connection, dict[str, Any]]:
    """Open an event stream: the connection (whose read() then blocks for each event)
    and the snapshot the keeper answered with."""
    connection = Connection(vault)
    args: dict[str, Any] = {"kinds": kinds} if kinds is not None else {}
    try:
        answer = connection.request("subscribe", **args)
    except BaseException:
        connection.close()
        raise
    connection.settimeout(None)
    return connection, answer["snapshot"]
