"""The one interface the console uses to talk to a keeper.

Owner mode (here): the keeper runs inside the console's process, on a thread and event
loop of its own, so neither side ever waits on the other: commands cross over with
run_coroutine_threadsafe, events come back through a callback the caller makes
thread-safe. Attach mode (a keeper already running elsewhere) implements the same
methods over the control socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import Any, Protocol, TypeVar, cast

from watchkeeper.core.config import Config
from watchkeeper.core.control_client import Connection, subscribe
from watchkeeper.core.control_protocol import ControlError, ControlFailed
from watchkeeper.core.control_server import start_control
from watchkeeper.core.daemon import freeze_startup, tune_process
from watchkeeper.core.events import Event
from watchkeeper.core.history import Query, QueryResult, recent
from watchkeeper.core.keeper import Keeper
from watchkeeper.core.lock import VaultLock, holder
from watchkeeper.core.resume import ResumePlan
from watchkeeper.core.triage import operator

T = TypeVar("T")
CALL_TIMEOUT = 10.0


class KeeperClient(Protocol):
    mode: str  # "owner" or "attach"
    vault: Path
    pid: int  # the keeper's process

    def start(self, on_event: Callable[[Event], None]) -> None: ...
    def snapshot(self) -> dict[str, Any]: ...
    def run_now(self, job: str, params: dict[str, str] | None = None) -> str: ...
    def pause(self, job: str | None = None) -> None: ...
    def resume_plan(self, job: str | None = None) -> ResumePlan: ...
    def resume(self, job: str | None = None, missed: bool = True) -> None: ...
    def cancel(self, run_id: str) -> bool: ...
    def decide(self, path: str, outcome: str, reason: str | None = None) -> dict[str, Any]: ...
    def history(self, query: Query) -> QueryResult: ...
    def close(self, end_runs: bool = False) -> None: ...


class InProcessClient:
    """Owns the vault's lock and runs the keeper on a background thread."""

    mode = "owner"

    def __init__(self, config: Config, lock: VaultLock) -> None:
        self.config = config
        self.vault = config.vault
        self.pid = os.getpid()
        self.lock = lock
        self.keeper = Keeper(config, lock)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._failure: BaseException | None = None
        self._thread: threading.Thread | None = None
        self._end_runs = False
        self._closing = False

    def start(self, on_event: Callable[[Event], None]) -> None:
        self._thread = threading.Thread(
            target=self._main, args=(on_event,), name="keeper", daemon=True
        )
        self._thread.start()
        self._ready.wait()
        if self._failure is not None:
            raise self._failure

    def _main(self, on_event: Callable[[Event], None]) -> None:
        try:
            asyncio.run(self._serve(on_event))
        except BaseException as error:  # reported to the thread that called start()
            self._failure = error
            self._ready.set()

    async def _serve(self, on_event: Callable[[Event], None]) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        subscription = self.keeper.bus.subscribe(maxsize=10_000)
        tune_process()
        await self.keeper.start()
        freeze_startup()
        control = await start_control(self.keeper)
        serving = asyncio.create_task(self.keeper.serve())

        async def forward() -> None:
            while True:
                on_event(await subscription.get())

        forwarding = asyncio.create_task(forward())
        self._ready.set()
        await self._stop.wait()
        if self._end_runs:
            self.keeper.hurry()
        await self.keeper.stop()
        await serving
        if control is not None:
            await control.close()
        forwarding.cancel()
        while (event := subscription.get_nowait()) is not None:
            on_event(event)
        subscription.close()

    def _call(self, function: Callable[..., T], *args: Any) -> T:
        """Run `function` on the keeper's loop and wait for its (quick) answer."""
        assert self._loop is not None

        async def call() -> T:
            return function(*args)

        future: Future[T] = asyncio.run_coroutine_threadsafe(call(), self._loop)
        return future.result(CALL_TIMEOUT)

    def snapshot(self) -> dict[str, Any]:
        # The control protocol's Snapshot; the console reads it as any JSON object.
        return cast(dict[str, Any], self._call(self.keeper.snapshot))

    def run_now(self, job: str, params: dict[str, str] | None = None) -> str:
        return self._call(self.keeper.run_now, job, "manual", params)

    def pause(self, job: str | None = None) -> None:
        self._call(self.keeper.pause, job)

    def resume_plan(self, job: str | None = None) -> ResumePlan:
        return self._call(self.keeper.resume_plan, job)

    def resume(self, job: str | None = None, missed: bool = True) -> None:
        self._call(self.keeper.resume, job, missed)

    def cancel(self, run_id: str) -> bool:
        return self._call(self.keeper.cancel, run_id)

    def decide(self, path: str, outcome: str, reason: str | None = None) -> dict[str, Any]:
        """Approve or dismiss an item in Needs_Action/ (core/triage.py)."""
        return dict(self._call(self.keeper.decide, path, outcome, reason, operator()))

    def history(self, query: Query) -> QueryResult:
        # History is the vault's files: read here, on the caller's thread, not the keeper's.
        return recent(self.vault / "Logs" / "history", query)

    def close(self, end_runs: bool = False) -> None:
        """Stop the keeper: let runs finish (its shutdown grace), or end them now. Called
        with `end_runs` while an earlier close waits for the runs, it ends them now."""
        if self._loop is None or self._stop is None or self._thread is None:
            self.lock.release()
            return
        if self._closing:
            if end_runs:
                self._end_runs = True
                with contextlib.suppress(RuntimeError):  # the keeper stopped meanwhile
                    self._loop.call_soon_threadsafe(self.keeper.hurry)
            return
        self._closing = True
        self._end_runs = end_runs
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join()
        self.lock.release()


class SocketClient:
    """Attached to a keeper that runs elsewhere (a --daemon, another console) through
    its control socket. Commands share one connection; events arrive on a second one,
    read by a thread of their own. When the keeper goes away the stream ends and the
    caller gets a `keeper_state` event with state GONE."""

    mode = "attach"

    def __init__(self, vault: Path, role: str | None = None) -> None:
        self.vault = vault
        self.role = role  # "read": the keeper refuses this console's run, pause, cancel
        self._commands = Connection(vault, CALL_TIMEOUT, role)  # ControlUnavailable: none runs
        self.pid: int = self._commands.pid or 0
        self._lock = threading.Lock()
        self._events: Connection | None = None
        self._reader: threading.Thread | None = None
        self._closing = False

    def start(self, on_event: Callable[[Event], None]) -> None:
        self._events, _ = subscribe(self.vault, role=self.role)
        self._reader = threading.Thread(
            target=self._read_events, args=(self._events, on_event), name="events", daemon=True
        )
        self._reader.start()

    def _read_events(self, stream: Connection, on_event: Callable[[Event], None]) -> None:
        while True:
            try:
                while True:
                    message = stream.read()
                    data = message.get("data")
                    kind = str(message.get("event"))
                    on_event(Event(kind, data if isinstance(data, dict) else {}))
            except (OSError, ValueError):
                pass  # the stream ended: the keeper went away, dropped us, or close() shut it
            if self._closing:
                return
            again = self._resubscribe()
            if self._closing:
                if again is not None:
                    again.close()
                return
            if again is None:
                on_event(Event("keeper_state", {"state": "GONE", "pid": self.pid}))
                return
            stream = again
            # Whatever happened while we were cut off is in a fresh snapshot.
            on_event(Event("resync", {"reconnected": True}))

    def _resubscribe(self) -> Connection | None:
        """A keeper drops a subscriber that stalled; if the same keeper is still there,
        subscribe again instead of reporting it gone."""
        if (holder(self.vault) or {}).get("pid") != self.pid:
            return None
        try:
            stream, _ = subscribe(self.vault, role=self.role)
        except ControlError:
            return None
        old, self._events = self._events, stream
        if old is not None:
            old.close()
        return stream

    def _request(self, op: str, **args: Any) -> dict[str, Any]:
        with self._lock:
            return self._commands.request(op, **args)

    def snapshot(self) -> dict[str, Any]:
        status: dict[str, Any] = self._request("status")["status"]
        return status

    def run_now(self, job: str, params: dict[str, str] | None = None) -> str:
        # Sent only when given, so a request without them reads as it always did.
        extra = {"params": params} if params else {}
        run_id: str = self._request("run", job=job, **extra)["run_id"]
        return run_id

    def pause(self, job: str | None = None) -> None:
        self._request("pause", job=job)

    def resume_plan(self, job: str | None = None) -> ResumePlan:
        return ResumePlan.from_json(self._request("resume", job=job, preview=True)["plan"])

    def resume(self, job: str | None = None, missed: bool = True) -> None:
        self._request("resume", job=job, missed=missed)

    def cancel(self, run_id: str) -> bool:
        try:
            self._request("cancel", run_id=run_id)
        except ControlFailed:
            return False  # nothing by that id in flight any more
        return True

    def decide(self, path: str, outcome: str, reason: str | None = None) -> dict[str, Any]:
        op = "approve" if outcome == "approved" else "dismiss"
        answer = self._request(op, path=path, reason=reason, by=operator())
        decision: dict[str, Any] = answer["decision"]
        return decision

    def history(self, query: Query) -> QueryResult:
        # Same host, same files: reading them here spares the keeper the work.
        return recent(self.vault / "Logs" / "history", query)

    def close(self, end_runs: bool = False) -> None:
        """Disconnect; the keeper goes on (`end_runs` is the owner's business)."""
        self._closing = True
        if self._events is not None:
            self._events.shutdown()
        if self._reader is not None:
            self._reader.join(CALL_TIMEOUT)
        if self._events is not None:
            self._events.close()
        self._commands.close()
