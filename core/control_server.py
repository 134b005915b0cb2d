"""The keeper's side of the control socket: one answer per request, and event streams.

The keeper's loop is never at a client's mercy: a request is read whole (bounded, under
deadlines, see control_conn) before anything happens, each op is a quick call on the loop
(history is read in a thread), and a subscriber reads from its own bounded queue: one that
falls behind gets a resync with a fresh snapshot, one whose socket takes nothing for
STALL_LIMIT is dropped.

The server knows the keeper only as `Controlled`, the few calls it makes: the keeper does
not import this module, whoever starts a keeper with a socket (the daemon, the console)
puts the two together.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, cast

from watchkeeper.core import history as hist
from watchkeeper.core.control_conn import Connections, Limits, Slot, send
from watchkeeper.core.control_listen import UnixListener
from watchkeeper.core.control_protocol import (
    HISTORY_DEPTH,
    HISTORY_LIMIT,
    OPS,
    STALL_LIMIT,
    SUBSCRIBER_BACKLOG,
    Answer,
    DecideAnswer,
    HistoryAnswer,
    JobView,
    PlanJson,
    RequestError,
    RunAnswer,
    RunJson,
    Snapshot,
    decode_request,
    encode,
    error_answer,
    socket_path_for,
)
from watchkeeper.core.control_roles import check as check_role
from watchkeeper.core.control_roles import session_role
from watchkeeper.core.events import EVENT_KINDS
from watchkeeper.core.names import shown
from watchkeeper.core.params import ParamError
from watchkeeper.core.triage import DecisionJson, NotAnItem

if TYPE_CHECKING:
    from watchkeeper.core.config import Config
    from watchkeeper.core.events import EventBus
    from watchkeeper.core.lock import VaultLock
    from watchkeeper.core.logs import KeeperLog
    from watchkeeper.core.resume import ResumePlan


class Controlled(Protocol):
    """What the control socket asks of a keeper. Its views are plain dicts; their shapes
    are the protocol's TypedDicts (the casts below), which tests/test_control.py holds a
    running keeper's answers to."""

    @property
    def vault(self) -> Path: ...
    @property
    def config(self) -> Config: ...
    @property
    def jobs(self) -> Mapping[str, object]: ...
    @property
    def bus(self) -> EventBus: ...
    @property
    def log(self) -> KeeperLog: ...
    @property
    def lock(self) -> VaultLock | None: ...
    @property
    def stopping(self) -> bool: ...
    @property
    def state_word(self) -> str: ...

    def snapshot(self) -> Snapshot: ...
    def job_view(self, runtime: Any) -> JobView: ...
    def pause(self, job: str | None = None) -> bool: ...
    def resume_plan(self, job: str | None = None, missed: bool = True) -> ResumePlan: ...
    def resume(self, job: str | None = None, missed: bool = True) -> bool: ...
    def run_and_watch(
        self, job: str, trigger: str = ..., params: dict[str, str] | None = None
    ) -> tuple[str, asyncio.Future[dict[str, Any]]]: ...
    def cancel(self, run_id: str) -> bool: ...
    def decide(
        self, path: str, outcome: str, reason: str | None = None, by: str | None = None
    ) -> DecisionJson: ...


class ControlServer:
    def __init__(self, keeper: Controlled, path: Path, limits: Limits | None = None) -> None:
        self.keeper = keeper
        self.path = path
        self.limits = limits or Limits()
        self.listener = UnixListener(path)
        self.connections = Connections(self.limits, self._respond)

    async def start(self) -> None:
        await self.listener.start(self.connections.handle, self.limits.request)

    async def close(self) -> None:
        if not self.listener.stop_accepting():
            return
        await self.connections.close()
        self.listener.remove()

    async def _respond(
        self, slot: Slot, line: bytes, writer: asyncio.StreamWriter
    ) -> Answer | None:
        try:
            request = decode_request(line)
            slot.role = session_role(slot.role, request)
            check_role(slot.role, request)
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

    async def _answer(self, request: dict[str, Any]) -> Answer:
        keeper = self.keeper
        op = request["op"]
        if op == "status":
            return {"ok": True, "status": keeper.snapshot()}
        if op == "jobs":
            return {"ok": True, "jobs": [keeper.job_view(r) for r in keeper.jobs.values()]}
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
            state = keeper.state_word
            plan_json = cast(PlanJson, plan.to_json())
            return {"ok": True, "plan": plan_json, "state": state, "changed": changed}
        if op == "run":
            return await self._run(request)
        if op == "cancel":
            run_id = request.get("run_id")
            if not isinstance(run_id, str) or not run_id:
                raise RequestError("cancel needs run_id (a string)")
            if not keeper.cancel(run_id):
                raise RequestError(f"no run {run_id} in flight, queued or waiting to retry")
            return {"ok": True, "cancelled": run_id}
        if op in ("approve", "dismiss"):
            return self._decide(request)
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

    def _decide(self, request: dict[str, Any]) -> DecideAnswer:
        op = request["op"]
        path = request.get("path")
        if not isinstance(path, str) or not path:
            raise RequestError(f"{op} needs path (vault-relative, like Needs_Action/x.md)")
        reason, by = _optional_str(request, "reason"), _optional_str(request, "by")
        outcome = "approved" if op == "approve" else "dismissed"
        try:
            decision = self.keeper.decide(path, outcome, reason, by)
        except NotAnItem as error:
            raise RequestError(str(error)) from None
        except OSError as error:
            raise RequestError(f"{op} {shown(path)}: {error.strerror or error}") from None
        return {"ok": True, "decision": dict(decision)}

    async def _run(self, request: dict[str, Any]) -> RunAnswer:
        job = self._job(request)
        assert job is not None
        if self.keeper.stopping:
            raise RequestError("the keeper is stopping: no new runs")
        params = request.get("params")
        if params is not None and not isinstance(params, dict):
            raise RequestError('run params must be an object like {"day": "2026-12-01"}')
        try:
            run_id, finished = self.keeper.run_and_watch(job, params=params)
        except ParamError as error:
            raise RequestError(str(error)) from None
        if not _flag(request, "wait", False):
            return {"ok": True, "run_id": run_id}
        try:
            # shield: a client that hangs up must not cancel the keeper's own future.
            record = await asyncio.shield(finished)
        except asyncio.CancelledError:
            if finished.cancelled():
                raise RequestError(f"the keeper stopped before run {run_id} ended") from None
            raise
        return {"ok": True, "run_id": run_id, "record": cast(RunJson, record)}

    async def _history(self, request: dict[str, Any]) -> HistoryAnswer:
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
            "runs": [cast(RunJson, record.to_json()) for record in page],
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
                    self.keeper.log.warning(
                        f"control: dropped a subscriber that read nothing for {STALL_LIMIT:g}s"
                    )
                    writer.transport.abort()  # close() would wait for it to read the backlog
                    return
        finally:
            subscription.close()


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


async def start_control(keeper: Controlled, limits: Limits | None = None) -> ControlServer | None:
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
