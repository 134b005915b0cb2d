"""The keeper: sleeps until the next due slot, starts runs, records every one of them.

Everything here runs on one asyncio loop. Slots sit in two heaps, one per clock (cron
on the wall clock, intervals on the monotonic one); the loop sleeps until the nearest
slot or until something (run-now, pause, a finished run) wakes it. There is no tick.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import os
import random
import resource
import secrets
import signal
import socket
import time
from collections import deque
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from core import history as hist
from core.config import Config, JobConfig
from core.environment import EnvFileError, Masker, job_environment, secret_values
from core.events import EventBus
from core.history import HistoryWriter, RunRecord, utc_now
from core.lock import VaultLock
from core.logs import KeeperLog, RotatingFile
from core.output import OutputSink
from core.processes import end_leftovers
from core.runner import Run, RunOutcome, RunSpec
from core.state import RuntimeState, load_state, save_state
from core.triggers import Schedule, schedules_for
from core.units import format_duration
from core.vault import ensure_layout

# A wall-clock sleep is re-checked at least this often, so a clock step delays a cron
# slot by at most this long instead of by the size of the step.
MAX_WALL_SLEEP = 60.0


def new_run_id() -> str:
    return f"{time.time_ns() // 1_000_000:x}-{secrets.token_hex(3)}"


@dataclass
class StartRequest:
    job: str
    trigger: str
    attempt: int = 1
    files: list[str] = field(default_factory=list)
    due_mono: float | None = None
    run_id: str = field(default_factory=new_run_id)


@dataclass
class ActiveRun:
    request: StartRequest
    record: RunRecord
    run: Run
    sink: OutputSink


@dataclass
class JobRuntime:
    config: JobConfig
    schedules: list[Schedule]
    log: RotatingFile
    base_env: dict[str, str]
    masker: Masker
    next_due: list[float | None] = field(default_factory=list)
    active: dict[str, ActiveRun] = field(default_factory=dict)
    queued: deque[StartRequest] = field(default_factory=deque)
    last: RunRecord | None = None
    after_met: set[str] = field(default_factory=set)
    missed_while_paused: int = 0

    @property
    def name(self) -> str:
        return self.config.name


def _argv(command: tuple[str, ...] | str) -> list[str]:
    return ["/bin/sh", "-c", command] if isinstance(command, str) else list(command)


def _raise_fd_limit() -> None:
    # Each run holds a pipe and a pidfd; hundreds in flight need more than the usual 1024.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and (hard == resource.RLIM_INFINITY or soft < hard):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


class Keeper:
    def __init__(self, config: Config, lock: VaultLock | None = None) -> None:
        self.config = config
        self.vault = config.vault
        self.lock = lock
        self.tz = config.keeper.tz
        self.host = socket.gethostname()
        self.bus = EventBus()
        ensure_layout(self.vault)
        logs = self.vault / "Logs"
        self.log = KeeperLog(
            logs / "watchkeeper.log", config.keeper.log_max_size, config.keeper.log_backups, self.tz
        )
        self.log.listeners.append(self._publish_log_line)
        self.history = HistoryWriter(logs / "history", on_error=self._history_failed)
        self.state: RuntimeState = load_state(self.vault)
        self._shared_env = dict(os.environ)
        self._shared_masker = Masker(secret_values(self._shared_env, ()))
        self.jobs: dict[str, JobRuntime] = {
            name: self._runtime(job) for name, job in config.jobs.items()
        }
        self.started_at = utc_now()
        self.started_mono = time.monotonic()
        self.stopping = False
        self.today = {"ok": 0, "failed": 0}
        self._today_date = datetime.now(self.tz).date()
        self._heaps: dict[str, list[tuple[float, int, str, int]]] = {"wall": [], "mono": []}
        self._seq = 0
        self._waiting: deque[StartRequest] = deque()
        self._running = 0
        self._retry_timers: dict[str, asyncio.TimerHandle] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self._idle: asyncio.Event | None = None

    # ---- setup -------------------------------------------------------------

    def _runtime(self, job: JobConfig) -> JobRuntime:
        # Jobs without env of their own share one copy of the keeper's environment and
        # one masker: with thousands of jobs, per-job copies would dominate memory.
        if job.env or job.secret_env:
            # env_file is read at each run instead (see _run_env), so it is left out here.
            base_env = job_environment(replace(job, env_file=None), self.vault, os.environ)
            masker = Masker(secret_values(base_env, job.secret_env))
        else:
            base_env, masker = self._shared_env, self._shared_masker
        return JobRuntime(
            config=job,
            schedules=schedules_for(job, self.tz) if job.enabled else [],
            log=RotatingFile(
                self.vault / "Logs" / "jobs" / f"{job.name}.log",
                self.config.keeper.log_max_size,
                self.config.keeper.log_backups,
                on_error=self._log_write_failed,
            ),
            base_env=base_env,
            masker=masker,
        )

    async def start(self) -> None:
        """Close what a dead keeper left open, learn recent results, lay out the schedule."""
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        _raise_fd_limit()
        await self._close_interrupted()
        self._load_recent()
        now = {"wall": time.time(), "mono": time.monotonic()}
        for runtime in self.jobs.values():
            runtime.next_due = []
            for index, schedule in enumerate(runtime.schedules):
                due = schedule.first(now[schedule.clock])
                runtime.next_due.append(due)
                self._push(schedule.clock, due, runtime.name, index)
        pruned = hist.prune(
            self.vault / "Logs" / "history",
            self.config.keeper.history_retention_days,
            utc_now().date(),
        )
        if pruned:
            self.log.info(f"history retention removed {len(pruned)} old segment(s)")
        self.log.info(
            f"keeper started: pid {os.getpid()}, {len(self.jobs)} job(s), vault {self.vault}"
        )
        self.bus.publish("keeper_state", state=self.state_word)

    async def _close_interrupted(self) -> None:
        previous = self.lock.previous if self.lock else {}
        since = utc_now() - timedelta(days=2)
        started = previous.get("started_at")
        if isinstance(started, str):
            with contextlib.suppress(ValueError):
                since = min(since, datetime.fromisoformat(started))
        open_runs = hist.open_runs(self.vault / "Logs" / "history", since)
        if not open_runs:
            return
        ended = await end_leftovers(
            {record.id for record in open_runs}, self.config.keeper.kill_grace
        )
        holder = f"keeper pid {previous['pid']}" if "pid" in previous else "the previous keeper"
        for record in open_runs:
            record.status = "interrupted"
            record.completed_at = utc_now()
            record.duration_ms = int(
                (record.completed_at - record.started_at).total_seconds() * 1000
            )
            record.error = f"{holder} stopped while this run was in flight"
            if ended.get(record.id):
                record.error += f"; ended {ended[record.id]} leftover process(es)"
            self.history.append(record)
            self.log.warning(
                f"run {record.id} of {record.job} closed as interrupted: {record.error}"
            )

    def _load_recent(self) -> None:
        midnight = datetime.now(self.tz).replace(hour=0, minute=0, second=0, microsecond=0)
        since = min(midnight, datetime.now(self.tz) - timedelta(days=1))
        result = hist.runs_since(self.vault / "Logs" / "history", since)
        for record in result.records:
            runtime = self.jobs.get(record.job)
            if record.status == "running":
                continue
            if runtime is not None and runtime.last is None:
                runtime.last = record
            if record.started_at >= midnight:
                self._count_today(record.status)
        if result.bad_lines:
            self.log.warning(f"history: skipped {result.bad_lines} unreadable line(s)")

    # ---- the loop -------------------------------------------------------------

    def _push(self, clock: str, due: float, job: str, index: int) -> None:
        self._seq += 1
        heapq.heappush(self._heaps[clock], (due, self._seq, job, index))

    def wake(self) -> None:
        if self._wake is not None:
            self._wake.set()

    async def serve(self) -> None:
        """Fire due slots until stop() is called."""
        assert self._loop is not None and self._wake is not None
        loop = self._loop
        while not self.stopping:
            self._fire_due()
            delay = self._sleep_for()
            self._wake.clear()
            handle = loop.call_at(loop.time() + delay, self._wake.set)
            await self._wake.wait()
            handle.cancel()

    def _sleep_for(self) -> float:
        delays = [MAX_WALL_SLEEP]
        if self._heaps["mono"]:
            delays.append(self._heaps["mono"][0][0] - time.monotonic())
        if self._heaps["wall"]:
            delays.append(self._heaps["wall"][0][0] - time.time())
        return max(0.0, min(delays))

    def _fire_due(self) -> None:
        now = {"wall": time.time(), "mono": time.monotonic()}
        for clock, heap in self._heaps.items():
            while heap and heap[0][0] <= now[clock]:
                due, _, name, index = heapq.heappop(heap)
                runtime = self.jobs.get(name)
                if runtime is None or index >= len(runtime.next_due):
                    continue
                if runtime.next_due[index] != due:
                    continue  # superseded by a reload
                following = runtime.schedules[index].following(due, now[clock])
                runtime.next_due[index] = following
                self._push(clock, following, name, index)
                if self.state.is_paused(name):
                    runtime.missed_while_paused += 1
                    continue
                due_mono = due if clock == "mono" else now["mono"] - (now["wall"] - due)
                self.submit(StartRequest(name, "schedule", due_mono=due_mono))

    # ---- starting runs ----------------------------------------------------------

    def submit(self, request: StartRequest) -> str:
        """Start a run now, or queue it behind max_parallel / overlap; returns its id."""
        runtime = self.jobs[request.job]
        if self.stopping:
            self._record_skipped(request, "keeper is stopping")
            return request.run_id
        if runtime.active:
            overlap = runtime.config.overlap
            if overlap == "skip":
                running = next(iter(runtime.active))
                self._record_skipped(request, f"run {running} still running (overlap = skip)")
                return request.run_id
            if overlap == "queue":
                if runtime.queued:
                    queued = runtime.queued[0].run_id
                    self._record_skipped(request, f"run {queued} already queued (overlap = queue)")
                else:
                    runtime.queued.append(request)
                    self.bus.publish("job_state", **self.job_view(runtime))
                return request.run_id
        if self._running >= self.config.keeper.max_parallel:
            self._waiting.append(request)
            return request.run_id
        self._start(request)
        return request.run_id

    def _record_skipped(self, request: StartRequest, reason: str) -> None:
        now = utc_now()
        record = self._new_record(request, now)
        record.status, record.completed_at, record.duration_ms, record.error = (
            "skipped",
            now,
            0,
            reason,
        )
        self.history.append(record)
        self.bus.publish("run_finished", **self.record_view(record))

    def _new_record(self, request: StartRequest, started_at: datetime) -> RunRecord:
        return RunRecord(
            id=request.run_id,
            job=request.job,
            project=self.vault.name,
            started_at=started_at,
            status="running",
            trigger=request.trigger,
            host=self.host,
            cron=self.jobs[request.job].config.cron,
            attempt=request.attempt,
            files=list(request.files),
        )

    def _run_env(self, runtime: JobRuntime, request: StartRequest) -> tuple[dict[str, str], Masker]:
        env, masker = runtime.base_env, runtime.masker
        if runtime.config.env_file:
            # Read at every run so an edited env_file applies without a reload.
            env = job_environment(runtime.config, self.vault, os.environ)
            masker = Masker(secret_values(env, runtime.config.secret_env))
        env = {
            **env,
            "WATCHKEEPER_VAULT": str(self.vault),
            "WATCHKEEPER_JOB": request.job,
            "WATCHKEEPER_RUN_ID": request.run_id,
            "WATCHKEEPER_TRIGGER": request.trigger,
        }
        if request.files:
            env["WATCHKEEPER_FILES"] = "\n".join(request.files)
        return env, masker

    def _start(self, request: StartRequest) -> None:
        runtime = self.jobs[request.job]
        job = runtime.config
        record = self._new_record(request, utc_now())
        # The running line goes first: if we die between it and the spawn, the next
        # keeper still finds the run and closes it as interrupted.
        self.history.append(record)
        cwd = self.vault / job.cwd if job.cwd else self.vault
        try:
            env, masker = self._run_env(runtime, request)
            sink = OutputSink(
                runtime.log, request.run_id, masker, self.tz, self._job_line(job.name)
            )
            spec = RunSpec(
                request.run_id,
                _argv(job.command),
                env,
                cwd,
                job.timeout,
                self.config.keeper.kill_grace,
            )
            run = Run(spec, sink.feed, self._loop)
        except (OSError, EnvFileError, ValueError) as error:
            reason = error.strerror if isinstance(error, OSError) and error.strerror else str(error)
            exit_code = 127 if isinstance(error, FileNotFoundError) else 126
            self._finish_unstarted(
                runtime, record, f"cannot start {_argv(job.command)[0]}: {reason}", exit_code
            )
            return
        spawned_mono = time.monotonic()
        self._running += 1
        self._idle.clear()
        active = ActiveRun(request, record, run, sink)
        runtime.active[request.run_id] = active
        sink.note(f"▶ started: trigger {request.trigger}, attempt {request.attempt}, pid {run.pid}")
        lateness_ms = None
        if request.due_mono is not None:
            lateness_ms = (spawned_mono - request.due_mono) * 1000
        self.log.info(
            f"run {request.run_id} of {job.name} started ({request.trigger}, pid {run.pid})"
        )
        self.bus.publish(
            "run_started", **self.record_view(record), pid=run.pid, lateness_ms=lateness_ms
        )
        run.done.add_done_callback(lambda done: self._finished(active, done.result()))

    def _finish_unstarted(
        self, runtime: JobRuntime, record: RunRecord, error: str, exit_code: int
    ) -> None:
        record.status, record.error, record.exit_code = "failure", error, exit_code
        record.completed_at = utc_now()
        record.duration_ms = 0
        self.history.append(record)
        runtime.last = record
        self._count_today("failure")
        self.log.error(f"run {record.id} of {record.job}: {error}")
        self.bus.publish("run_finished", **self.record_view(record))

    def _finished(self, active: ActiveRun, outcome: RunOutcome) -> None:
        record = active.record
        runtime = self.jobs.get(record.job)
        record.status = outcome.status
        record.exit_code = outcome.exit_code
        record.error = outcome.error
        record.duration_ms = outcome.duration_ms
        record.completed_at = utc_now()
        self.history.append(record)
        active.sink.flush()
        active.sink.note(
            f"■ {outcome.status}"
            + (f": {outcome.error}" if outcome.error else "")
            + f" after {format_duration(outcome.duration_ms / 1000)}"
        )
        self._running -= 1
        self._count_today(outcome.status)
        level = self.log.info if outcome.status == "success" else self.log.warning
        level(
            f"run {record.id} of {record.job} {outcome.status}"
            + (f" ({outcome.error})" if outcome.error else "")
            + f" in {format_duration(outcome.duration_ms / 1000)}"
        )
        self.bus.publish("run_finished", **self.record_view(record))
        if runtime is not None:
            runtime.active.pop(record.id, None)
            runtime.last = record
            if not runtime.active:
                runtime.log.close()
            self._after_run(runtime, active.request, outcome)
        self._drain_waiting()

    def _after_run(self, runtime: JobRuntime, request: StartRequest, outcome: RunOutcome) -> None:
        job = runtime.config
        if self.stopping:
            return
        if outcome.status in ("failure", "timeout") and request.attempt <= job.retries:
            # Exponential backoff with full jitter: spreads retries of many failing jobs.
            ceiling = min(job.max_retry_delay, job.retry_delay * 2 ** (request.attempt - 1))
            delay = random.uniform(0, ceiling)
            retry = StartRequest(job.name, "retry", request.attempt + 1, list(request.files))
            self.log.info(
                f"{job.name}: attempt {request.attempt} {outcome.status}; "
                f"retry {retry.attempt} of {job.retries + 1} in {format_duration(delay)}"
            )
            self._retry_timers[retry.run_id] = self._loop.call_later(delay, self._retry, retry)
        if outcome.status == "success":
            self._advance_chains(job.name)
        else:
            for dependent in self.jobs.values():
                dependent.after_met.discard(job.name)
        if runtime.queued:
            self.submit(runtime.queued.popleft())

    def _retry(self, request: StartRequest) -> None:
        self._retry_timers.pop(request.run_id, None)
        if request.job in self.jobs:
            self.submit(request)

    def _advance_chains(self, succeeded: str) -> None:
        for dependent in self.jobs.values():
            if succeeded not in dependent.config.after:
                continue
            dependent.after_met.add(succeeded)
            if not dependent.after_met.issuperset(dependent.config.after):
                continue
            dependent.after_met.clear()
            if not dependent.config.enabled:
                continue
            if self.state.is_paused(dependent.name):
                dependent.missed_while_paused += 1
                continue
            self.submit(StartRequest(dependent.name, "after"))

    def _drain_waiting(self) -> None:
        while self._waiting and self._running < self.config.keeper.max_parallel:
            self.submit(self._waiting.popleft())
        if self._running == 0 and not self._waiting:
            self._idle.set()

    def _count_today(self, status: str) -> None:
        today = datetime.now(self.tz).date()
        if today != self._today_date:
            self._today_date, self.today = today, {"ok": 0, "failed": 0}
        if status == "success":
            self.today["ok"] += 1
        elif status in ("failure", "timeout", "interrupted"):
            self.today["failed"] += 1

    # ---- operator actions -------------------------------------------------------

    def run_now(self, job: str, trigger: str = "manual") -> str:
        if job not in self.jobs:
            raise KeyError(job)
        run_id = self.submit(StartRequest(job, trigger))
        self.wake()
        return run_id

    def pause(self, job: str | None = None) -> None:
        self._set_paused(job, True)

    def resume(self, job: str | None = None) -> None:
        self._set_paused(job, False)

    def _set_paused(self, job: str | None, paused: bool) -> None:
        if job is None:
            self.state.paused = paused
        elif job not in self.jobs:
            raise KeyError(job)
        elif paused:
            self.state.paused_jobs.add(job)
        else:
            self.state.paused_jobs.discard(job)
        try:
            save_state(self.vault, self.state)
        except OSError as error:
            self.log.error(f"cannot save {self.vault / 'Logs' / 'state.toml'}: {error.strerror}")
        word = "paused" if paused else "resumed"
        self.log.info(f"{job or 'all jobs'} {word}")
        if job is None:
            self.bus.publish("keeper_state", state=self.state_word)
            for runtime in self.jobs.values():
                self.bus.publish("job_state", **self.job_view(runtime))
        else:
            self.bus.publish("job_state", **self.job_view(self.jobs[job]))

    def cancel(self, run_id: str, reason: str = "cancelled by operator") -> bool:
        for runtime in self.jobs.values():
            if run_id in runtime.active:
                runtime.active[run_id].run.stop("cancelled", reason)
                return True
            for request in runtime.queued:
                if request.run_id == run_id:
                    runtime.queued.remove(request)
                    self._record_never_started(request, "cancelled", reason)
                    return True
        for request in self._waiting:
            if request.run_id == run_id:
                self._waiting.remove(request)
                self._record_never_started(request, "cancelled", reason)
                return True
        timer = self._retry_timers.pop(run_id, None)
        if timer is not None:
            timer.cancel()
            return True
        return False

    def _record_never_started(self, request: StartRequest, status: str, reason: str) -> None:
        now = utc_now()
        record = self._new_record(request, now)
        record.status, record.completed_at, record.duration_ms, record.error = (
            status,
            now,
            0,
            reason,
        )
        self.history.append(record)
        self.bus.publish("run_finished", **self.record_view(record))

    # ---- stopping --------------------------------------------------------------

    async def stop(self, grace: float | None = None) -> None:
        """Start nothing new, let runs finish for `grace`, then end their groups."""
        if grace is None:
            grace = self.config.keeper.shutdown_grace
        self.stopping = True
        self.wake()
        for timer in self._retry_timers.values():
            timer.cancel()
        self._retry_timers.clear()
        while self._waiting:
            self._record_never_started(self._waiting.popleft(), "skipped", "keeper stopped first")
        for runtime in self.jobs.values():
            while runtime.queued:
                self._record_never_started(
                    runtime.queued.popleft(), "skipped", "keeper stopped first"
                )
        if self._running:
            self.log.info(
                f"stopping: waiting up to {format_duration(grace)} for {self._running} run(s)"
            )
            await self.wait_idle(grace)
        if self._running:
            self.hurry()
            await self.wait_idle(self.config.keeper.kill_grace + 5)
        self.log.info("keeper stopped")
        self.bus.publish("keeper_state", state="STOPPED")
        self.history.close()
        self.log.close()

    def hurry(self) -> None:
        """End every run in flight now instead of waiting out the drain."""
        for runtime in self.jobs.values():
            for active in runtime.active.values():
                active.run.stop("cancelled", "keeper stopped")

    async def wait_idle(self, timeout: float | None = None) -> bool:
        """True once no run is in flight or waiting for a slot."""
        assert self._idle is not None
        try:
            async with asyncio.timeout(timeout):
                await self._idle.wait()
        except TimeoutError:
            return False
        return True

    # ---- views --------------------------------------------------------------------

    @property
    def state_word(self) -> str:
        if self.stopping:
            return "STOPPING"
        return "PAUSED" if self.state.paused else "RUNNING"

    def next_run(self, runtime: JobRuntime) -> datetime | None:
        wall_now, mono_now = time.time(), time.monotonic()
        moments = [
            due if schedule.clock == "wall" else wall_now + (due - mono_now)
            for schedule, due in zip(runtime.schedules, runtime.next_due, strict=False)
            if due is not None
        ]
        return datetime.fromtimestamp(min(moments), self.tz) if moments else None

    def record_view(self, record: RunRecord) -> dict[str, Any]:
        return record.to_json()

    def job_view(self, runtime: JobRuntime) -> dict[str, Any]:
        job = runtime.config
        next_run = self.next_run(runtime)
        now = time.monotonic()
        return {
            "name": job.name,
            "trigger": job.trigger_summary,
            "enabled": job.enabled,
            "paused": self.state.is_paused(job.name),
            "next_run": next_run.isoformat(timespec="seconds") if next_run else None,
            "last": runtime.last.to_json() if runtime.last else None,
            "running": [
                {
                    "id": run_id,
                    "pid": active.run.pid,
                    "trigger": active.request.trigger,
                    "elapsed_s": round(now - active.run.started_mono, 3),
                }
                for run_id, active in runtime.active.items()
            ],
            "queued": len(runtime.queued),
            "missed_while_paused": runtime.missed_while_paused,
        }

    def snapshot(self) -> dict[str, Any]:
        return {
            "vault": str(self.vault),
            "state": self.state_word,
            "pid": os.getpid(),
            "host": self.host,
            "started_at": hist.iso(self.started_at),
            "uptime_s": round(time.monotonic() - self.started_mono, 1),
            "paused": self.state.paused,
            "running": self._running,
            "waiting": len(self._waiting),
            "today": dict(self.today),
            "jobs": [self.job_view(runtime) for runtime in self.jobs.values()],
        }

    # ---- plumbing -----------------------------------------------------------------

    def _job_line(self, job: str):
        def publish(line: str) -> None:
            self.bus.publish("log_line", source=job, line=line)

        return publish

    def _publish_log_line(self, stamp: str, level: str, message: str) -> None:
        self.bus.publish("log_line", source="keeper", time=stamp, level=level, line=message)

    def _history_failed(self, error: OSError) -> None:
        self.log.error(f"cannot write history: {error.strerror or error}")

    def _log_write_failed(self, path: Path, error: OSError) -> None:
        self.log.error(f"cannot write {path}: {error.strerror}; job output dropped until it can")


async def run_once(keeper: Keeper, dry_run: bool = False) -> list[str]:
    """--once: each enabled scheduled job once, then whatever its `after` chain starts.
    Returns the names of the jobs started (or that would start, with dry_run)."""
    chosen = [
        runtime.name
        for runtime in keeper.jobs.values()
        if runtime.config.enabled
        and runtime.config.scheduled
        and not keeper.state.is_paused(runtime.name)
    ]
    if dry_run:
        return chosen
    for name in chosen:
        keeper.submit(StartRequest(name, "schedule"))
    await keeper.wait_idle()
    return chosen


def install_signal_handlers(keeper: Keeper, stop: asyncio.Event) -> None:
    """SIGINT/SIGTERM drain gracefully; a second one ends the runs at once."""
    loop = asyncio.get_running_loop()

    def on_signal(number: int) -> None:
        name = signal.Signals(number).name
        if stop.is_set():
            keeper.log.warning(f"{name} again: ending runs now")
            keeper.hurry()
            return
        keeper.log.info(f"{name}: draining")
        stop.set()

    for number in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(number, on_signal, number)


async def run_daemon(keeper: Keeper) -> None:
    """--daemon: serve until SIGINT/SIGTERM, then drain."""
    stop = asyncio.Event()
    install_signal_handlers(keeper, stop)
    await keeper.start()
    serving = asyncio.create_task(keeper.serve())
    await stop.wait()
    await keeper.stop()
    await serving
