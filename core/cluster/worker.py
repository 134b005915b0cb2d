"""`watchkeeper worker`: a procrastinate worker that runs the cluster's runs on this host.

Each job carries a run id. The worker claims the run's row in watchkeeper.remote_runs
(queued → running, conditioned in SQL: never two copies of one run), starts the command
under a guard (core/cluster/guard.py) that ends its process group even if this process
is killed outright, streams its output into watchkeeper.output, and reports the end.
The leader learns each step by NOTIFY on `watchkeeper_remote` ("<cluster> <run> <what>");
a cancel reaches this worker by NOTIFY on `watchkeeper_cancel`, and by the heartbeat's
poll when a notification was lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, cast

import procrastinate
import psycopg
from procrastinate.worker import Worker as ProcrastinateWorker

from watchkeeper.core.cluster import db, queue
from watchkeeper.core.cluster.dsn import DatabaseUnavailable
from watchkeeper.core.cluster.guarded import Guard, OutputStream, read_status
from watchkeeper.core.cluster.schema import ensure_schema
from watchkeeper.core.units import format_duration

REMOTE_CHANNEL = "watchkeeper_remote"
CANCEL_CHANNEL = "watchkeeper_cancel"
# How long a run's claim, progress and end are retried while the database is away.
DB_PATIENCE = 120.0


def log(message: str) -> None:
    print(f"watchkeeper worker: {message}", file=sys.stderr, flush=True)


@dataclass(frozen=True)
class WorkerSettings:
    dsn: str
    cluster: str
    labels: tuple[str, ...] = ()
    concurrency: int = 4
    # procrastinate's heartbeat; a leader declares the worker lost when it lapses.
    heartbeat: float = 10.0
    host: str = field(default_factory=socket.gethostname)


class _Procrastinate(ProcrastinateWorker):
    """procrastinate 3.10's worker notices a dead side task (its heartbeat, its listener)
    only while its periodic deferrer runs, and without periodic tasks that one returns at
    once: the worker would go on without a heartbeat, and a leader would give its runs up
    while they run. Kept alive, a side task's death stops the worker, and serve() starts a
    new one; the side tasks below outlive a database restart, so that is a last resort."""

    @property
    def _base(self) -> Any:
        """procrastinate's own methods (untyped, so called through Any)."""
        return super()

    async def _periodic_deferrer(self) -> None:
        if not self.app.periodic_registry.periodic_tasks:
            await asyncio.Event().wait()
        await self._base._periodic_deferrer()

    # A database restart must not end the worker: its runs go on (a procrastinate
    # worker that stops waits for them first, without a heartbeat meanwhile), so the
    # heartbeat, the listener and the fetch each wait for the database to come back.

    async def _update_heartbeat(self) -> None:
        while True:
            try:
                await self._base._update_heartbeat()
            except procrastinate.exceptions.ConnectorException as error:
                log(f"heartbeat: {error.__cause__ or error}; retrying in 1s")
                await asyncio.sleep(1.0)

    def _start_side_tasks(self) -> list[asyncio.Task[Any]]:
        # Started with listen_notify=False: this listener outlives a lost connection.
        return [*super()._start_side_tasks(), asyncio.create_task(self._listen_for_jobs())]

    async def _listen_for_jobs(self) -> None:
        while True:
            with contextlib.suppress(procrastinate.exceptions.ConnectorException):
                await self.app.job_manager.listen_for_jobs(
                    on_notification=self._handle_notification, queues=self.queues
                )
            await asyncio.sleep(1.0)
            self._new_job_event.set()  # what was deferred while not listening

    async def _fetch_and_process_jobs(self) -> None:
        try:
            await self._base._fetch_and_process_jobs()
        except procrastinate.exceptions.ConnectorException as error:
            log(f"cannot fetch jobs: {error.__cause__ or error}; polling again")


@dataclass
class Running:
    """One run on this worker, from its claim to its reported end."""

    run_id: str
    spec: dict[str, Any]
    guard: subprocess.Popen[bytes] | None = None
    stop_asked: tuple[str, str] | None = None
    started: float = 0.0
    timer: asyncio.TimerHandle | None = None


class Worker:
    def __init__(self, settings: WorkerSettings) -> None:
        self.settings = settings
        self.worker_id = f"{settings.host}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.running: dict[str, Running] = {}
        self._conn: psycopg.AsyncConnection[Any] | None = None
        self._stopping = False
        self._procrastinate: _Procrastinate | None = None
        self._spares: list[Guard] = []
        self._reconnecting = asyncio.Lock()

    @property
    def conn(self) -> psycopg.AsyncConnection[Any]:
        assert self._conn is not None
        return self._conn

    async def prepare(self) -> None:
        """Connect, migrate, register: raises DatabaseUnavailable when it cannot."""
        self._conn = await db.connect(self.settings.dsn)
        await ensure_schema(self.conn, also=queue.apply_schema)
        s = self.settings
        await self.conn.execute(
            "INSERT INTO watchkeeper.workers (cluster, worker_id, host, pid, labels,"
            " concurrency, started_at, seen_at)"
            " VALUES (%s, %s, %s, %s, %s, %s, clock_timestamp(), clock_timestamp())",
            (s.cluster, self.worker_id, s.host, os.getpid(), list(s.labels), s.concurrency),
        )

    async def serve(self) -> None:
        """Take runs until stop(); the runs still going then end as interrupted."""
        s = self.settings
        queues = queue.queues_of(s.cluster, s.labels)
        app = queue.make_app(s.dsn, self._task)
        loop = asyncio.get_running_loop()
        for number in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(number, self.stop)
        side = [asyncio.create_task(self._listen()), asyncio.create_task(self._beat())]
        log(f"{self.worker_id} serving {', '.join(queues)} (concurrency {s.concurrency})")
        self._refill()
        try:
            async with app.open_async():
                while not self._stopping:
                    self._procrastinate = worker = _Procrastinate(
                        app=app,
                        queues=queues,
                        name=self.worker_id,
                        concurrency=s.concurrency,
                        install_signal_handlers=False,
                        update_heartbeat_interval=s.heartbeat,
                        fetch_job_polling_interval=2.0,
                        listen_notify=False,
                        delete_jobs="successful",
                    )
                    try:
                        # Returns when a side task (heartbeat, listener) died with the
                        # database: a new procrastinate worker takes over, heartbeat and all.
                        await cast(Any, worker).run()
                    except procrastinate.exceptions.ConnectorException as error:
                        log(f"lost the database ({error.__cause__ or error}); reconnecting")
                    if not self._stopping:
                        await asyncio.sleep(1.0)
        finally:
            for task in side:
                task.cancel()
            with contextlib.suppress(psycopg.Error):
                await self.conn.execute(
                    "DELETE FROM watchkeeper.workers WHERE cluster = %s AND worker_id = %s",
                    (s.cluster, self.worker_id),
                )
            await self.conn.close()

    def stop(self) -> None:
        if self._stopping:
            return
        self._stopping = True
        log(f"stopping: {len(self.running)} run(s) in flight end as interrupted")
        for run in list(self.running.values()):
            self._end(run, "interrupted", f"worker {self.worker_id} stopped")
        for guard in self._spares:
            guard.discard()
        self._spares.clear()
        if self._procrastinate is not None:
            cast(Any, self._procrastinate).stop()

    # ---- one run --------------------------------------------------------------------

    async def _task(self, context: Any, cluster: str, run_id: str) -> None:
        if run_id in self.running:
            return
        if self._stopping:  # fetched as the worker stopped: another worker takes it
            await queue.defer(context.app, context.job.queue, cluster, run_id)
            return
        # Our own claim too: when the connection broke after it committed, it is retried.
        cursor = await self._sql(
            "UPDATE watchkeeper.remote_runs SET state = 'running', worker_id = %s, host = %s,"
            " job_id = %s WHERE cluster = %s AND run_id = %s"
            " AND (state = 'queued' OR (state = 'running' AND worker_id = %s AND pid IS NULL))"
            " RETURNING spec, cancel_status, cancel_reason",
            (self.worker_id, self.settings.host, context.job.id, cluster, run_id, self.worker_id),
            patient=True,
        )
        row = await cursor.fetchone()
        if row is None:
            log(f"run {run_id} was taken or withdrawn before this worker got to it")
            return
        run = Running(run_id, row[0])
        if row[1] is not None:
            run.stop_asked = (row[1], row[2] or "")
        self.running[run_id] = run
        try:
            await self._execute(run)
        finally:
            del self.running[run_id]

    async def _execute(self, run: Running) -> None:
        try:
            guard = self._take_guard()
        except OSError as error:
            await self._report_end(run, "unstarted", error.errno or 0, f"guard: {error}", 0)
            return
        run.guard = guard.process
        assert guard.process.stdin is not None
        with contextlib.suppress(BrokenPipeError):  # the guard died: no status, said below
            guard.process.stdin.write(json.dumps(run.spec).encode())
            guard.process.stdin.close()
        output = OutputStream(
            guard.out,
            lambda chunk: self.output(run.run_id, chunk),
            lambda error: log(f"run {run.run_id}: output lost, the database refused it: {error}"),
        )
        status_lines = await read_status(guard.status, lambda pid: self._started(run, pid))
        self._refill()  # a guard that could not start the command took one too
        await output.closed
        await asyncio.to_thread(guard.process.wait)
        if run.timer is not None:
            run.timer.cancel()
        await self._finish(run, status_lines)

    def _take_guard(self) -> Guard:
        """A guard started ahead of need: an interpreter's start is most of a run's
        dispatch time. The pool is as large as --concurrency, so a burst that fills every
        slot at once finds one ready for each run."""
        while self._spares:
            guard = self._spares.pop(0)  # the oldest: the likeliest to be ready
            if guard.process.poll() is None:
                return guard
            guard.discard()
        return Guard.spawn()

    def _refill(self) -> None:
        """Called once a run's child is alive (or its start failed), not as it starts: a
        new interpreter starting beside a run's start would slow that start down."""
        while len(self._spares) < self.settings.concurrency and not self._stopping:
            try:
                self._spares.append(Guard.spawn())
            except OSError:
                return  # the next run starts one itself

    async def _started(self, run: Running, pid: int) -> None:
        run.started = time.monotonic()
        asyncio.get_running_loop().call_soon(self._refill)  # beside the write below
        timeout = run.spec.get("timeout")
        if timeout:
            reason = f"timed out after {format_duration(float(timeout))}"
            run.timer = asyncio.get_running_loop().call_later(
                float(timeout), lambda: self._end(run, "timeout", reason)
            )
        await self._write(
            "UPDATE watchkeeper.remote_runs SET pid = %s, started_at = clock_timestamp()"
            " WHERE cluster = %s AND run_id = %s AND worker_id = %s RETURNING 1",
            (pid, self.settings.cluster, run.run_id, self.worker_id),
            run.run_id,
            "started",
        )
        if run.stop_asked is not None:
            self._end(run, *run.stop_asked)

    def _end(self, run: Running, status: str, reason: str) -> None:
        """End the run's whole group (the guard sends TERM, then KILL after the grace)."""
        if run.stop_asked is None:  # the first reason is the one the run ends with
            run.stop_asked = (status, reason)
        if run.guard is not None and run.started:
            with contextlib.suppress(ProcessLookupError):
                run.guard.send_signal(signal.SIGTERM)

    async def _finish(self, run: Running, lines: list[str]) -> None:
        duration_ms = round((time.monotonic() - run.started) * 1000) if run.started else 0
        last = lines[-1].split(" ", 2) if lines else ["lost"]
        if last[0] == "error":
            await self._report_end(run, "unstarted", int(last[1]), last[2], 0)
            return
        code: int | None
        error: str | None
        if last[0] != "exit":
            status, code, error = "failure", None, "the run's guard ended without its status"
        elif last[1] == "code":
            code = int(last[2])
            status = "success" if code == 0 else "failure"
            error = None if code == 0 else f"exit code {code}"
        else:
            number = int(last[2])
            code, status, error = 128 + number, "failure", f"ended by {_signal_name(number)}"
        if run.stop_asked is not None:
            status, error = run.stop_asked
        await self._report_end(run, status, code, error, duration_ms)

    async def _report_end(
        self, run: Running, status: str, code: int | None, error: str | None, duration_ms: int
    ) -> None:
        await self._write(
            "UPDATE watchkeeper.remote_runs SET state = 'ended', status = %s, exit_code = %s,"
            " error = %s, duration_ms = %s, ended_at = clock_timestamp()"
            " WHERE cluster = %s AND run_id = %s AND worker_id = %s AND state = 'running'"
            " RETURNING 1",
            (status, code, error, duration_ms, self.settings.cluster, run.run_id, self.worker_id),
            run.run_id,
            "ended",
        )

    async def _write(self, sql: str, params: tuple[Any, ...], run_id: str, what: str) -> None:
        """One statement (the connection is shared by the runs): the change, and the
        notification the leader gets once it is committed."""
        await self._sql(
            f"WITH change AS ({sql}) SELECT pg_notify(%s, %s)",
            (*params, REMOTE_CHANNEL, f"{self.settings.cluster} {run_id} {what}"),
            patient=True,
        )

    async def _sql(
        self, sql: str, params: tuple[Any, ...], patient: bool = False
    ) -> psycopg.AsyncCursor[Any]:
        """Run one statement; a connection the database dropped (a restart) is replaced.
        `patient`: retried for up to DB_PATIENCE, as a run's claim, progress and end must
        reach the database once it is back."""
        deadline = time.monotonic() + DB_PATIENCE
        while True:
            conn = self.conn
            try:
                return await conn.execute(sql, params)
            except psycopg.OperationalError as error:
                await self._reconnect(conn, error)
                if not patient or time.monotonic() > deadline:
                    raise
                await asyncio.sleep(1.0)

    async def _reconnect(self, broken: psycopg.AsyncConnection[Any], error: Exception) -> None:
        async with self._reconnecting:
            if self._conn is not broken:
                return  # another task already replaced it
            log(f"lost the database ({str(error).strip().splitlines()[0]}); reconnecting")
            with contextlib.suppress(DatabaseUnavailable):
                self._conn = await db.connect(self.settings.dsn)
                await broken.close()

    async def output(self, run_id: str, chunk: bytes) -> None:
        await self._write(
            "INSERT INTO watchkeeper.output (cluster, run_id, chunk) VALUES (%s, %s, %s)"
            " RETURNING 1",
            (self.settings.cluster, run_id, chunk),
            run_id,
            "output",
        )

    # ---- side tasks -----------------------------------------------------------------

    async def _listen(self) -> None:
        """Cancels by NOTIFY: a leader's stop() reaches the run within a round trip."""
        while True:
            try:
                conn = await db.connect(self.settings.dsn)
                async with conn:
                    await conn.execute(f"LISTEN {CANCEL_CHANNEL}")
                    await self._check_runs()  # what was asked while not listening
                    async for note in conn.notifies():
                        cluster, _, run_id = note.payload.partition(" ")
                        if cluster == self.settings.cluster and run_id in self.running:
                            await self._check_runs()
            except (psycopg.Error, DatabaseUnavailable) as error:
                log(f"cancel listener lost the database ({error}); retrying")
                await asyncio.sleep(1.0)

    async def _beat(self) -> None:
        """Our own row's seen_at (cluster status), and a poll of our runs: a cancel whose
        notification was lost, or a run a leader gave up on (this worker seemed dead)."""
        while True:
            await asyncio.sleep(self.settings.heartbeat)
            try:
                await self._sql(
                    "UPDATE watchkeeper.workers SET seen_at = clock_timestamp()"
                    " WHERE cluster = %s AND worker_id = %s",
                    (self.settings.cluster, self.worker_id),
                )
                await self._check_runs()
            except psycopg.Error as error:
                log(f"heartbeat failed: {error}")

    async def _check_runs(self) -> None:
        if not self.running:
            return
        cursor = await self._sql(
            "SELECT run_id, state, worker_id, cancel_status, cancel_reason"
            " FROM watchkeeper.remote_runs WHERE cluster = %s AND run_id = ANY(%s)",
            (self.settings.cluster, list(self.running)),
        )
        for run_id, state, owner, cancel_status, cancel_reason in await cursor.fetchall():
            run = self.running.get(run_id)
            if run is None:
                continue
            if owner != self.worker_id or state == "ended":
                self._end(run, "interrupted", "the leader gave this run up")
            elif cancel_status is not None:
                self._end(run, cancel_status, cancel_reason or "")


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


async def run_worker(settings: WorkerSettings) -> None:
    worker = Worker(settings)
    await worker.prepare()
    await worker.serve()
