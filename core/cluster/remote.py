"""The leader's side of runs on workers: the Executor seam (core/seams.py) over
PostgreSQL and procrastinate (core/cluster/routing.py sends each run here or to the
LocalExecutor by `runs_on`).

submit() writes the run's row in watchkeeper.remote_runs (its spec as jsonb) and defers
its procrastinate job to the queue of its label set. Everything after comes back from
the worker (core/cluster/worker.py) as rows, announced by NOTIFY on `watchkeeper_remote`:
the claim and the child's pid (→ `Started`), output chunks (→ the watch callback, in
order), the end (→ `done`). A poll every second catches what a lost notification or a
dropped connection missed, and judges heartbeats: a run whose worker's procrastinate
heartbeat lapsed is ended `interrupted`, naming the worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import procrastinate
import psycopg
from psycopg.types.json import Jsonb

from watchkeeper.core.cluster import db, heartbeats, queue
from watchkeeper.core.cluster.dsn import DatabaseUnavailable
from watchkeeper.core.cluster.worker import CANCEL_CHANNEL, REMOTE_CHANNEL
from watchkeeper.core.runner import Ending, RunOutcome, RunSpec

POLL = 1.0
LAPSE = 30.0  # DESIGN: a dead worker's runs are closed within 30 s
CLOSE_WAIT = 5.0


@dataclass(frozen=True)
class RemoteStarted:
    """A run a worker has picked up and started (seams.Started)."""

    pid: int | None
    started_mono: float
    worker_id: str
    host: str


@dataclass
class _Remote:
    """What the leader knows of one run on a worker."""

    token: Any
    spec: RunSpec
    seq: int = 0  # the last output row handed on
    started: RemoteStarted | None = None
    held: list[bytes] = field(default_factory=list)  # output before watch()
    outcome: RunOutcome | None = None
    handle: RemoteRun | None = None


class RemoteRun(Ending):
    """A run on a worker being watched (seams.RunHandle)."""

    def __init__(
        self, executor: RemoteExecutor, spec: RunSpec, started: RemoteStarted, on_output: Any
    ) -> None:
        super().__init__(asyncio.get_running_loop())
        self._executor = executor
        self.spec = spec
        self.pid = started.pid
        self.started_mono = started.started_mono
        self.worker_id = started.worker_id
        self.host = started.host
        self.on_output: Callable[[bytes], None] = on_output

    def stop(self, status: str, reason: str) -> None:
        if self.final is None:
            self._executor.cancel(self.spec.run_id, status, reason)


def spec_json(spec: RunSpec) -> dict[str, Any]:
    return {
        "run_id": spec.run_id,
        "job": spec.job,
        "argv": spec.argv,
        "env": spec.env,
        "cwd": str(spec.cwd),
        "timeout": spec.timeout,
        "kill_grace": spec.kill_grace,
        "runs_on": list(spec.runs_on),
    }


def spec_of(data: dict[str, Any]) -> RunSpec:
    return RunSpec(
        run_id=data["run_id"],
        argv=list(data["argv"]),
        env=dict(data["env"]),
        cwd=Path(data["cwd"]),
        timeout=data.get("timeout"),
        kill_grace=float(data.get("kill_grace", 5.0)),
        runs_on=tuple(data.get("runs_on", ("any",))),
        job=data.get("job", ""),
    )


class RemoteExecutor:
    """The Executor of one leader for runs on workers. Connects on first use, on the
    loop it is used from; `close()` (or shutdown()) lets go."""

    def __init__(
        self,
        deliver: Callable[[list[tuple[Any, Any]]], None],
        dsn: str,
        cluster: str,
        lapse: float = LAPSE,
        poll: float = POLL,
        log: Callable[[str], None] = lambda message: None,
    ) -> None:
        self._deliver = deliver
        self.dsn, self.cluster, self.lapse, self.poll, self.log = dsn, cluster, lapse, poll, log
        self._runs: dict[str, _Remote] = {}
        self._pending: list[_Remote] = []
        self._dirty: set[str] = set()
        self._conn: psycopg.AsyncConnection[Any] | None = None
        self._app: procrastinate.App | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._background: list[asyncio.Task[None]] = []  # the listener and the watchdog
        self._busy: dict[str, asyncio.Task[None] | None] = {"submit": None, "refresh": None}
        self._ready: asyncio.Task[None] | None = None

    # ---- the seam -------------------------------------------------------------------

    def submit(self, batch: list[tuple[Any, RunSpec]]) -> None:
        for token, spec in batch:
            remote = _Remote(token, spec)
            self._runs[spec.run_id] = remote
            self._pending.append(remote)
        self._kick("submit", self._submit)

    def watch(
        self, spec: RunSpec, started: RemoteStarted, on_output: Callable[[bytes], None]
    ) -> RemoteRun:
        remote = self._runs[spec.run_id]
        handle = RemoteRun(self, spec, started, on_output)
        remote.handle = handle
        held, remote.held = remote.held, []
        for chunk in held:
            handle.on_output(chunk)
        if remote.outcome is not None:
            self._resolve(remote)
        return handle

    def run(self, spec: RunSpec, on_output: Callable[[bytes], None]) -> RemoteRun:
        raise OSError(0, "hooks run on the keeper, not on a worker")

    def shutdown(self) -> None:
        for task in self._tasks:
            task.cancel()
        self._tasks.clear()
        if self._conn is not None:
            conn, self._conn = self._conn, None
            with contextlib.suppress(RuntimeError):
                asyncio.get_running_loop().create_task(conn.close())

    async def close(self) -> None:
        """shutdown(), once what was asked of the database (cancels, clean-ups) is done."""
        if self._tasks:
            pending = [task for task in self._tasks if task not in self._background]
            if pending:
                await asyncio.wait(pending, timeout=CLOSE_WAIT)
        self.shutdown()
        if self._app is not None:
            await self._app.close_async()
            self._app = None

    def has(self, run_id: str) -> bool:
        return run_id in self._runs

    def cancel(self, run_id: str, status: str, reason: str) -> None:
        """Ask the run's worker to end its group; `status` and `reason` become its
        outcome's. A run no worker has taken yet ends here and now."""
        self._spawn(self._cancel(run_id, status, reason))

    async def adopt(self, tokens: list[tuple[Any, str]]) -> dict[str, RunSpec]:
        """A new leader takes over runs a former leader left on workers: each (token,
        run id) still known in watchkeeper.remote_runs is watched from here on and its
        Started delivered with `token` like a submitted run's (at once when a worker
        has it, once one takes it if still queued). Their specs, by run id. Output
        written before the adoption stays with the former leader's log."""
        await self._ensure()
        ids = [run_id for _, run_id in tokens]
        cursor = await self._db.execute(
            "SELECT r.run_id, r.spec, coalesce(max(o.seq), 0) FROM watchkeeper.remote_runs r"
            " LEFT JOIN watchkeeper.output o ON o.cluster = r.cluster AND o.run_id = r.run_id"
            " WHERE r.cluster = %s AND r.run_id = ANY(%s) GROUP BY r.run_id, r.spec",
            (self.cluster, ids),
        )
        rows = await cursor.fetchall()
        specs = {run_id: spec_of(data) for run_id, data, _ in rows}
        seqs = {run_id: int(seq) for run_id, _, seq in rows}
        for token, run_id in tokens:
            if run_id in specs:
                self._runs[run_id] = _Remote(token, specs[run_id], seq=seqs[run_id])
        self._mark(list(specs))
        return specs

    # ---- the database ---------------------------------------------------------------

    @property
    def _db(self) -> psycopg.AsyncConnection[Any]:
        assert self._conn is not None
        return self._conn

    async def _ensure(self) -> None:
        ready = self._ready
        if ready is None or (ready.done() and ready.exception() is not None):
            # The first connection, or another try after the database was down.
            self._ready = ready = asyncio.get_running_loop().create_task(self._connect())
        await asyncio.shield(ready)

    async def _connect(self) -> None:
        self._conn = await db.connect(self.dsn)
        self._app = queue.make_app(self.dsn)
        await self._app.open_async()
        loop = asyncio.get_running_loop()
        self._background = [loop.create_task(self._listen()), loop.create_task(self._watchdog())]
        self._tasks += self._background

    def _kick(self, name: str, work: Callable[[], Any]) -> None:
        if self._busy[name] is None:
            task = asyncio.get_running_loop().create_task(work())
            self._busy[name] = task

    def _spawn(self, work: Any) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.append(task)
        task.add_done_callback(self._forget)

    def _forget(self, task: asyncio.Task[None]) -> None:
        if task in self._tasks:
            self._tasks.remove(task)

    async def _submit(self) -> None:
        """What was submitted meanwhile goes as one batch: three round trips per queue,
        not per run (a burst of slots fires many runs at once)."""
        try:
            while self._pending:
                batch, self._pending = self._pending, []
                by_queue: dict[str, list[_Remote]] = {}
                for remote in batch:
                    name = queue.queue_for(self.cluster, remote.spec.runs_on)
                    by_queue.setdefault(name, []).append(remote)
                failed: list[tuple[Any, Any]] = []
                for name, remotes in by_queue.items():
                    try:
                        await self._ensure()
                        await self._queue(name, [remote.spec for remote in remotes])
                    except (
                        psycopg.Error,
                        procrastinate.exceptions.ProcrastinateException,
                        DatabaseUnavailable,
                    ) as error:
                        for remote in remotes:
                            self._runs.pop(remote.spec.run_id, None)
                            failed.append(
                                (remote.token, OSError(0, f"cannot queue the run: {error}"))
                            )
                if failed:
                    self._deliver(failed)
        finally:
            self._busy["submit"] = None

    async def _queue(self, name: str, specs: list[RunSpec]) -> None:
        """The rows first, so a worker that fetches a job finds its run."""
        assert self._app is not None
        ids = [spec.run_id for spec in specs]
        async with self._db.cursor() as cursor:
            await cursor.executemany(
                "INSERT INTO watchkeeper.remote_runs (cluster, run_id, job, queue, spec)"
                " VALUES (%s, %s, %s, %s, %s)",
                [(self.cluster, s.run_id, s.job, name, Jsonb(spec_json(s))) for s in specs],
            )
        job_ids = await queue.defer_many(self._app, name, self.cluster, ids)
        # The job ids only serve the watchdog (a worker that died before its claim).
        await self._db.execute(
            "UPDATE watchkeeper.remote_runs r SET job_id = coalesce(r.job_id, l.job_id)"
            " FROM unnest(%s::text[], %s::bigint[]) AS l(run_id, job_id)"
            " WHERE r.cluster = %s AND r.run_id = l.run_id",
            (ids, job_ids, self.cluster),
        )

    async def _cancel(self, run_id: str, status: str, reason: str) -> None:
        while run_id in self._runs:
            try:
                await self._ensure()
                await self._mark_cancel(run_id, status, reason)
                break
            except (psycopg.Error, DatabaseUnavailable) as error:
                self.log(f"remote run {run_id}: cannot ask for its end yet: {error}")
                await self._reconnect()
                await asyncio.sleep(self.poll)
        self._mark([run_id])

    async def _mark_cancel(self, run_id: str, status: str, reason: str) -> None:
        # One statement: the mark, and the worker's notification only if it was made.
        await self._db.execute(
            "WITH mark AS (UPDATE watchkeeper.remote_runs SET state = CASE WHEN state ="
            " 'queued' THEN 'ended' ELSE state END, cancel_status = %s, cancel_reason = %s,"
            " status = CASE WHEN state = 'queued' THEN %s ELSE status END,"
            " error = CASE WHEN state = 'queued' THEN %s ELSE error END,"
            " duration_ms = CASE WHEN state = 'queued' THEN 0 ELSE duration_ms END"
            " WHERE cluster = %s AND run_id = %s AND state <> 'ended' RETURNING 1)"
            " SELECT pg_notify(%s, %s) FROM mark",
            (
                status,
                reason,
                status,
                reason,
                self.cluster,
                run_id,
                CANCEL_CHANNEL,
                f"{self.cluster} {run_id}",
            ),
        )

    # ---- what comes back ------------------------------------------------------------

    def _mark(self, run_ids: list[str]) -> None:
        self._dirty.update(run_id for run_id in run_ids if run_id in self._runs)
        if self._dirty:
            self._kick("refresh", self._refresh)

    async def _listen(self) -> None:
        while True:
            try:
                conn = await db.connect(self.dsn)
                async with conn:
                    await conn.execute(f"LISTEN {REMOTE_CHANNEL}")
                    self._mark(list(self._runs))  # what happened while not listening
                    async for note in conn.notifies():
                        cluster, _, rest = note.payload.partition(" ")
                        if cluster == self.cluster:
                            self._mark([rest.partition(" ")[0]])
            except (psycopg.Error, DatabaseUnavailable) as error:
                self.log(f"remote runs: lost the database ({error}); listening again in 1s")
                await asyncio.sleep(1.0)

    async def _watchdog(self) -> None:
        """Every `poll`: end the runs of workers whose heartbeat lapsed, and look at every
        run in flight (a notification lost with a connection)."""
        while True:
            await asyncio.sleep(self.poll)
            if not self._runs:
                continue
            try:
                await self._lapsed()
            except (psycopg.Error, procrastinate.exceptions.ProcrastinateException) as error:
                self.log(f"remote runs: cannot check the workers' heartbeats: {error}")
                await self._reconnect()
            self._mark(list(self._runs))

    async def _reconnect(self) -> None:
        with contextlib.suppress(psycopg.Error, DatabaseUnavailable):
            old, self._conn = self._conn, await db.connect(self.dsn)
            if old is not None:
                await old.close()

    async def _lapsed(self) -> None:
        args = (self._db, self.cluster, list(self._runs), self.lapse)
        for run_id, job_id in await heartbeats.end_lapsed(*args):
            self.log(f"remote run {run_id}: its worker's heartbeat lapsed; ended as interrupted")
            await self._drop_job(job_id)
        for run_id, name, job_id in await heartbeats.unclaimed(*args):
            assert self._app is not None
            self.log(f"remote run {run_id}: its worker died before starting it; queued again")
            await self._drop_job(job_id)
            new_job = await queue.defer(self._app, name, self.cluster, run_id)
            await self._db.execute(
                "UPDATE watchkeeper.remote_runs SET job_id = %s"
                " WHERE cluster = %s AND run_id = %s AND job_id = %s",
                (new_job, self.cluster, run_id, job_id),
            )

    async def _drop_job(self, job_id: int | None) -> None:
        """A job whose worker is gone: failed, so procrastinate never hands it out again."""
        if job_id is not None and self._app is not None:
            with contextlib.suppress(procrastinate.exceptions.ProcrastinateException):
                await self._app.job_manager.finish_job_by_id_async(
                    job_id, procrastinate.jobs.Status.FAILED, delete_job=False
                )

    async def _refresh(self) -> None:
        try:
            while self._dirty:
                ids, self._dirty = sorted(self._dirty), set()
                try:
                    await self._ensure()
                    await self._read(ids)
                except (psycopg.Error, DatabaseUnavailable) as error:
                    self.log(f"remote runs: cannot read their progress: {error}")
                    await self._reconnect()
                    await asyncio.sleep(self.poll)
        finally:
            self._busy["refresh"] = None

    async def _read(self, ids: list[str]) -> None:
        # The rows first, then the output: a run seen ended has all its output written.
        cursor = await self._db.execute(
            "SELECT run_id, state, worker_id, host, pid, status, exit_code, error,"
            " duration_ms FROM watchkeeper.remote_runs WHERE cluster = %s AND run_id = ANY(%s)",
            (self.cluster, ids),
        )
        rows = await cursor.fetchall()
        known = [self._runs[i] for i in ids if i in self._runs]
        cursor = await self._db.execute(
            "SELECT o.run_id, o.seq, o.chunk FROM watchkeeper.output o"
            " JOIN unnest(%s::text[], %s::bigint[]) AS l(run_id, seq)"
            " ON o.run_id = l.run_id AND o.seq > l.seq WHERE o.cluster = %s"
            " ORDER BY o.run_id, o.seq",
            ([r.spec.run_id for r in known], [r.seq for r in known], self.cluster),
        )
        output = await cursor.fetchall()
        started: list[tuple[Any, Any]] = []
        for run_id, state, worker_id, host, pid, status, code, error, _ in rows:
            remote = self._runs.get(run_id)
            if remote is None or remote.started is not None:
                continue
            if pid is not None:
                remote.started = RemoteStarted(pid, time.monotonic(), worker_id, host)
                started.append((remote.token, remote.started))
            elif state == "ended" and status == "unstarted":
                del self._runs[run_id]
                started.append((remote.token, OSError(code or 0, error)))
            elif state == "ended":  # withdrawn before a worker took it, or its worker died
                remote.started = RemoteStarted(None, time.monotonic(), worker_id or "", host or "")
                started.append((remote.token, remote.started))
        if started:
            self._deliver(started)
        for run_id, seq, chunk in output:
            remote = self._runs.get(run_id)
            if remote is not None and seq > remote.seq:
                remote.seq = seq
                if remote.handle is not None:
                    remote.handle.on_output(bytes(chunk))
                else:
                    remote.held.append(bytes(chunk))
        for run_id, state, _, _, _, status, code, error, duration in rows:
            remote = self._runs.get(run_id)
            if remote is not None and state == "ended" and remote.outcome is None:
                remote.outcome = RunOutcome(status, code, error, int(duration or 0))
                if remote.handle is not None:
                    self._resolve(remote)

    def _resolve(self, remote: _Remote) -> None:
        assert remote.handle is not None and remote.outcome is not None
        self._runs.pop(remote.spec.run_id, None)
        remote.handle.finish_with(remote.outcome)
        self._spawn(self._clean_up(remote.spec.run_id))

    async def _clean_up(self, run_id: str) -> None:
        """The run's output is in the leader's job log now, where secrets are masked:
        not kept in the database, nor the environment it ran with (its secrets too)."""
        try:
            await self._db.execute(
                "WITH gone AS (DELETE FROM watchkeeper.output WHERE cluster = %s"
                " AND run_id = %s) UPDATE watchkeeper.remote_runs SET spec = spec - 'env'"
                " WHERE cluster = %s AND run_id = %s",
                (self.cluster, run_id, self.cluster, run_id),
            )
        except psycopg.Error as error:
            self.log(f"remote run {run_id}: its output stays in the database: {error}")
