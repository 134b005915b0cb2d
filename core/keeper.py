"""The keeper: sleeps until the next due slot, starts runs, records every one of them.

Everything here runs on one asyncio loop. Slots sit in two heaps, one per clock (cron
on the wall clock, intervals on the monotonic one); the loop sleeps until the nearest
slot or until something (run-now, pause, a finished run, a file) wakes it. No tick.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import heapq
import os
import random
import resource
import socket
import sys
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from operator import itemgetter
from pathlib import Path
from typing import Any

from core import history as hist
from core import logsdir
from core.config import Config, ConfigError, JobConfig, load_config
from core.environment import EnvFileError, Masker, inside_vault, job_environment, secret_values
from core.events import EventBus
from core.faults import described
from core.handover import Handover, files_env
from core.history import HistoryWriter, RunRecord, utc_now
from core.ledger import LEDGER_NAME, Ledger
from core.lock import VaultLock
from core.logs import KeeperLog, RotatingFile
from core.output import OutputSink
from core.outputs import Outputs
from core.precise import sleep_until
from core.processes import end_leftovers
from core.quota import Quota, usage_view
from core.resume import ResumePlan, plan_resume, waking_jobs
from core.runner import Run, RunOutcome, RunSpec, Spawned, Spawner, SpawnResult
from core.state import RuntimeState, load_state, update_state
from core.status import last_runs
from core.triggers import Schedule, schedules_for, wall_moment
from core.units import format_duration
from core.vault import summarize_all
from core.watchers import Watches

# A wall-clock sleep is re-checked at least this often, so a clock step delays a cron
# slot by at most this long instead of by the size of the step.
MAX_WALL_SLEEP = 60.0
# A slot is slept for in epoll up to this long before it, the rest in a precise sleep.
# epoll wakes up to a whole millisecond (and the timer slack) after it was asked to, and
# a wake past the slot makes every run of it late: so two, and the runs are readied in
# whatever is left of them.
FINE_WAIT = 0.002
# Readying a run (record, running line, environment) takes about this long: serve() wakes
# that much earlier again for each run due at the next instant, up to READY_MAX, so that a
# pile of slots at one instant is spawned at it rather than readied at it.
READY_EACH = 0.00005
READY_MAX = 0.25
# Runs are handed to the spawner threads at least this many at a time.
SPAWN_BATCH = 8
# ... and come back from them in one batch, taken on the loop this long a turn at most.
STARTED_SLICE = 0.02
STARTED_MIN = 0.002
# A thread waiting for the GIL gets it after this long (Python's default is 5 ms): the
# loop must not wait that long behind a render, nor spawner threads behind the loop.
SWITCH_INTERVAL = 0.0001
VAULT_EVENT_INTERVAL = 0.25
HOOK_TIMEOUT = 60.0
# A dependent remembers this many recent waves of its `after` jobs' successes.
WAVES_KEPT = 32


def new_run_id() -> str:
    # Not a secret, only unique: the PRNG spares a getrandom() call per run.
    return f"{time.time_ns() // 1_000_000:x}-{random.getrandbits(24):06x}"


@dataclass
class StartRequest:
    job: str
    trigger: str
    attempt: int = 1
    files: list[str] = field(default_factory=list)
    due_mono: float | None = None
    due_wall: float | None = None  # the slot's time on the wall clock
    run_id: str = field(default_factory=new_run_id)
    wave: str | None = None
    """Runs of one wave (one slot, one --once, one manual start and what follows from
    it) satisfy `after` lists together."""


@dataclass
class JobRuntime:
    config: JobConfig
    schedules: list[Schedule]
    log: RotatingFile
    base_env: dict[str, str]
    masker: Masker
    next_due: list[float] = field(default_factory=list)
    active: dict[str, ActiveRun] = field(default_factory=dict)
    queued: deque[StartRequest] = field(default_factory=deque)
    last: RunRecord | None = None
    waves: OrderedDict[str, set[str]] = field(default_factory=OrderedDict)
    missed_while_paused: int = 0
    file_request: bool = False
    files_not_before: float = 0.0

    @property
    def name(self) -> str:
        return self.config.name


@dataclass
class ActiveRun:
    request: StartRequest
    record: RunRecord
    run: Run | None  # None while the spawner thread starts it
    sink: OutputSink
    runtime: JobRuntime
    stop_asked: tuple[str, str] | None = None

    def stop(self, status: str, reason: str) -> None:
        if self.run is None:
            self.stop_asked = (status, reason)  # applied the moment it has started
        else:
            self.run.stop(status, reason)


def _argv(command: tuple[str, ...] | str) -> list[str]:
    return ["/bin/sh", "-c", command] if isinstance(command, str) else list(command)


def _same_job(a: JobConfig, b: JobConfig) -> bool:
    return replace(a, line=0) == replace(b, line=0)


def _raise_fd_limit() -> int:
    """Raise the soft limit on open files to the hard one; return it. Each run holds
    a pipe and a pidfd: hundreds in flight need more than the usual 1024."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and (hard == resource.RLIM_INFINITY or soft < hard):
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
    return 1 << 20 if soft == resource.RLIM_INFINITY else soft


def _backoff(job: JobConfig, attempt: int) -> float:
    """Exponential backoff with full jitter: spreads retries of many failing jobs."""
    return random.uniform(0, min(job.max_retry_delay, job.retry_delay * 2 ** (attempt - 1)))


class Keeper:
    def __init__(self, config: Config, lock: VaultLock | None = None) -> None:
        self.config = config
        self.vault = config.vault
        self.lock = lock
        self.tz = config.keeper.tz
        self.host = socket.gethostname()
        self.bus = EventBus()
        logs = self.vault / "Logs"
        for folder in (logs / "jobs", logs / "history"):
            logsdir.make_folder(folder)
        changed_modes = logsdir.secure(logs, config.keeper.log_mode)
        self.log = KeeperLog(
            logs / "watchkeeper.log", config.keeper.log_max_size, config.keeper.log_backups, self.tz
        )
        self.log.listeners.append(self._publish_log_line)
        if changed_modes:
            mode = f"{config.keeper.log_mode:o}"
            self.log.info(f"Logs/: the modes of {changed_modes} file(s) set for log_mode {mode}")
        self.history = HistoryWriter(logs / "history", self.log)
        self.ledger = Ledger(logs / LEDGER_NAME, self.log)
        self.handover = Handover(self.vault, self.ledger, self.log, self._files_ready)
        self.outputs = Outputs(self)
        self.state: RuntimeState = load_state(self.vault)
        self.quota = Quota(config.keeper.max_runs_per_hour, self._job_limits(config))
        self._shared_env = dict(os.environ)
        self._shared_masker = Masker(secret_values(self._shared_env, ()))
        self.jobs: dict[str, JobRuntime] = {
            name: self._runtime(job, config) for name, job in config.jobs.items()
        }
        self.active: dict[str, ActiveRun] = {}
        self._open_logs: OrderedDict[RotatingFile, None] = OrderedDict()
        self._open_log_limit = 256
        self._dependents = self._dependents_of(config)
        # Spawning blocks while the vfork'd child execs; a few threads overlap those waits
        # with each other and with the loop's own work (4 measured best of 2/4/6).
        self._spawner = Spawner(4, self._spawned)
        # Runs started this loop turn, handed to the spawner together (see _dispatch).
        self._to_spawn: list[tuple[ActiveRun, RunSpec]] = []
        self._starting_ahead = False  # runs started now wait for their slot to be spawned
        self._loop_thread: int | None = None
        self._hooks: dict[str, Run] = {}
        self.started_at = utc_now()
        self.started_mono = time.monotonic()
        self.stopping = False
        self.today = {"ok": 0, "failed": 0}
        self._today_date = datetime.now(self.tz).date()
        self._heaps: dict[str, list[tuple[float, int, str, int]]] = {"wall": [], "mono": []}
        self._seq = 0
        self._waiting: deque[StartRequest] = deque()
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        # Set while no run is in flight or waiting (an Event binds to a loop once awaited).
        self._idle = asyncio.Event()
        self._idle.set()
        self._watches: Watches | None = None  # from serve() on
        self._vault_due: asyncio.TimerHandle | None = None
        self._run_watchers: dict[str, list[asyncio.Future[dict[str, Any]]]] = {}

    # ---- setup -------------------------------------------------------------

    @staticmethod
    def _dependents_of(config: Config) -> dict[str, list[str]]:
        """job -> the jobs whose `after` names it."""
        dependents: dict[str, list[str]] = {}
        for name, job in config.jobs.items():
            for needed in job.after:
                dependents.setdefault(needed, []).append(name)
        return dependents

    @staticmethod
    def _job_limits(config: Config) -> dict[str, int]:
        return {name: job.max_per_hour for name, job in config.jobs.items() if job.max_per_hour}

    def _runtime(self, job: JobConfig, config: Config) -> JobRuntime:
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
            schedules=schedules_for(job, config.keeper.tz) if job.enabled else [],
            log=RotatingFile(
                self.vault / "Logs" / "jobs" / f"{job.name}.log",
                config.keeper.log_max_size,
                config.keeper.log_backups,
                on_error=self._log_write_failed,
            ),
            base_env=base_env,
            masker=masker,
        )

    async def start(self, catch_up: bool = True, files: bool = True) -> None:
        """Close what a dead keeper left open, learn recent results, lay out the
        schedule, catch up what downtime missed, and find files already waiting."""
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        self.outputs.loop = self._loop
        self._open_log_limit = max(64, _raise_fd_limit() // 8)
        self._loop_thread = threading.get_ident()
        sys.setswitchinterval(min(sys.getswitchinterval(), SWITCH_INTERVAL))
        self.log.defer = self._defer
        # Only the loop writes history, so a plain call_soon gathers its lines.
        self.history.defer = self._loop.call_soon
        self.history.retry_later = self.ledger.out.retry_later = self._loop.call_later
        interrupted = await self._close_interrupted()
        history_dir = self.vault / "Logs" / "history"
        self.quota = Quota.from_history(
            history_dir,
            self.config.keeper.max_runs_per_hour,
            self._job_limits(self.config),
            time.time(),
        )
        self.outputs.read_history()
        last = self._load_recent()
        for runtime in self.jobs.values():
            self._first_dues(runtime)
            self._lay_out(runtime)
        pruned = hist.prune(
            history_dir, self.config.keeper.history_retention_days, utc_now().date()
        )
        if pruned:
            self.log.info(f"history retention removed {len(pruned)} old segment(s)")
        self.log.info(
            f"keeper started: pid {os.getpid()}, {len(self.jobs)} job(s), vault {self.vault}"
        )
        self.bus.publish("keeper_state", state=self.state_word)
        if catch_up and self.config.keeper.catch_up == "once":
            self._catch_up(last)
        self.ledger.load()
        self.handover.configure(self.config.jobs)
        self.handover.cut_off(interrupted)
        if files:
            self._rescan()
        # What exists now (config, jobs, schedules) lives as long as the keeper: frozen, a
        # full garbage collection need not walk it (with 1,000 jobs it held the loop 18 ms).
        gc.collect()
        gc.freeze()

    @staticmethod
    def _first_dues(runtime: JobRuntime) -> None:
        now = {"wall": time.time(), "mono": time.monotonic()}
        runtime.next_due = [schedule.first(now[schedule.clock]) for schedule in runtime.schedules]

    def _lay_out(self, runtime: JobRuntime) -> None:
        for index, schedule in enumerate(runtime.schedules):
            self._push(schedule.clock, runtime.next_due[index], runtime.name, index)

    async def _close_interrupted(self) -> list[RunRecord]:
        previous = self.lock.previous if self.lock else {}
        since = utc_now() - timedelta(days=2)
        started = previous.get("started_at")
        if isinstance(started, str):
            with contextlib.suppress(ValueError):
                since = min(since, datetime.fromisoformat(started))
        open_runs = hist.open_runs(self.vault / "Logs" / "history", since)
        if not open_runs:
            return []
        ended = await end_leftovers(
            {record.id for record in open_runs}, self.config.keeper.kill_grace
        )
        holder = f"keeper pid {previous['pid']}" if "pid" in previous else "the previous keeper"
        for record in open_runs:
            record.status = "interrupted"
            record.completed_at = utc_now()
            record.duration_ms = hist.elapsed_ms(
                (record.completed_at - record.started_at).total_seconds()
            )
            record.error = f"{holder} stopped while this run was in flight"
            if ended.get(record.id):
                record.error += f"; ended {ended[record.id]} leftover process(es)"
            self.history.append(record)
            self.log.warning(
                f"run {record.id} of {record.job} closed as interrupted: {record.error}"
            )
        self.history.flush()  # before start() reads the history back
        return open_runs

    def _load_recent(self) -> dict[str, RunRecord]:
        last, today, bad = last_runs(self.config)
        for name, record in last.items():
            if name in self.jobs:
                self.jobs[name].last = record
        self.today = today
        if bad:
            self.log.warning(f"history: skipped {bad} unreadable line(s)")
        return last

    def _catch_up(self, last: dict[str, RunRecord]) -> None:
        """One run per job whose slot passed while no keeper ran; never a burst."""
        now = time.time()
        for name, runtime in self.jobs.items():
            record = last.get(name)
            if record is None or not runtime.schedules or self.state.is_paused(name):
                continue
            since = record.started_at.timestamp()
            if any(schedule.missed_since(since, now) for schedule in runtime.schedules):
                self.log.info(f"{name}: a slot passed since its last run; catching up once")
                self.submit(StartRequest(name, "catch_up"))

    # ---- the loop -------------------------------------------------------------

    def _push(self, clock: str, due: float, job: str, index: int) -> None:
        self._seq += 1
        heapq.heappush(self._heaps[clock], (due, self._seq, job, index))

    def wake(self) -> None:
        if self._wake is not None:
            self._wake.set()

    def _defer(self, callback: Callable[[], None]) -> None:
        # call_soon_threadsafe also writes to the loop's self-pipe: a syscall (and a GIL
        # handoff) the loop's own callers can spare.
        assert self._loop is not None
        if threading.get_ident() == self._loop_thread:
            self._loop.call_soon(callback)
        else:
            self._loop.call_soon_threadsafe(callback)

    async def serve(self) -> None:
        """Fire due slots until stop() is called; watch the vault meanwhile."""
        assert self._loop is not None and self._wake is not None
        loop = self._loop
        self._watches = Watches(self)
        while not self.stopping:
            self._fire_due()
            delay, lead = self.sleep_for(), self._lead()
            self._wake.clear()
            # epoll sleeps whole milliseconds, rounded up: wake `lead` early (FINE_WAIT, and
            # time to ready the slot's runs) and sleep the rest precisely.
            handle = loop.call_at(loop.time() + delay - lead, self._wake.set)
            await self._wake.wait()
            handle.cancel()
            rest = self.sleep_for()
            if 0 < rest <= lead:
                # The loop is ours until the slot: its runs are made ready meanwhile, so
                # at the due time only their spawns are left.
                sleep_until(self._fire_due(ahead=True))
                self._dispatch()

    def behind(self) -> bool:
        """Slots are due that the loop has not fired yet."""
        return not self.stopping and self.sleep_for() <= 0

    def _next_slot(
        self, now: dict[str, float] | None = None
    ) -> tuple[float, list[tuple[float, int, str, int]]] | None:
        """Seconds from `now` until the soonest slot on either clock (negative if
        overdue), and the heap it heads."""
        now = now or {"wall": time.time(), "mono": time.monotonic()}
        heads = [(heap[0][0] - now[clock], heap) for clock, heap in self._heaps.items() if heap]
        return min(heads, key=itemgetter(0)) if heads else None

    def sleep_for(self) -> float:
        slot = self._next_slot()
        return max(0.0, min(MAX_WALL_SLEEP, slot[0])) if slot else MAX_WALL_SLEEP

    def _lead(self) -> float:
        """How long before the next slot serve() wakes to ready its runs."""
        slot = self._next_slot()
        if slot is None:
            return FINE_WAIT
        heap = slot[1]
        # Every ancestor of an entry equal to a heap's least is equal to it too: a walk
        # down from the root through equal entries finds them all, and only them.
        due, count, todo = heap[0][0], 0, [0]
        while todo and count * READY_EACH < READY_MAX:
            index = todo.pop()
            if index < len(heap) and heap[index][0] == due:
                count += 1
                todo += (2 * index + 1, 2 * index + 2)
        return FINE_WAIT + min(READY_MAX, count * READY_EACH)

    def _fire_due(self, ahead: bool = False) -> float:
        """Start the runs of the slots that are due and hand them to the spawner. With
        `ahead`, of the next slot instead, before it is due: they are left to the
        caller's _dispatch() at the instant returned (monotonic). As many as are ready
        by then; a burst's rest goes the usual way."""
        now = {"wall": time.time(), "mono": time.monotonic()}
        # From the same reading of the clocks, so the horizon is the slot's instant exactly.
        slot = self._next_slot(now) if ahead else None
        wait = max(0.0, slot[0]) if slot else 0.0
        ready_by = now["mono"] + wait
        self._starting_ahead = ahead
        try:
            for clock, heap in self._heaps.items():
                while heap and heap[0][0] <= now[clock] + wait:
                    if ahead and time.monotonic() >= ready_by:
                        break
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
                    self.submit(
                        StartRequest(
                            name,
                            "schedule",
                            due_mono=due if clock == "mono" else now["mono"] - (now["wall"] - due),
                            due_wall=due if clock == "wall" else now["wall"] - (now["mono"] - due),
                            wave=f"{clock}:{due:.0f}",
                        )
                    )
        finally:
            self._starting_ahead = False
        if not ahead:
            self._dispatch()  # now, not a loop turn later: these runs are due
        return ready_by

    # ---- the vault -----------------------------------------------------------

    def vault_changed(self) -> None:
        if self._vault_due is None and self._loop is not None:
            self._vault_due = self._loop.call_later(VAULT_EVENT_INTERVAL, self._publish_vault)

    def _publish_vault(self) -> None:
        self._vault_due = None
        try:
            folders = summarize_all(self.vault)
        except OSError as error:
            self.log.error(f"cannot count the vault's files: {described(error)}")
            return
        self.bus.publish(
            "vault_changed",
            folders={f.name: {"count": f.count, "newest": list(f.newest)} for f in folders},
        )
        self.outputs.changed()

    def _files_ready(self, job: str) -> None:
        """Files wait for `job`: start a run for them unless one will pick them up."""
        runtime = self.jobs.get(job)
        if runtime is None or not runtime.config.enabled or self.stopping:
            return
        if self.state.is_paused(job) or runtime.file_request:
            return
        if runtime.active and runtime.config.overlap != "allow":
            return  # the run in flight takes them on when it ends
        wait = runtime.files_not_before - time.monotonic()
        if wait > 0:
            key = f"files:{job}"
            if key not in self._timers and self._loop is not None:
                self._timers[key] = self._loop.call_later(wait, self._files_timer, job)
            return
        runtime.file_request = True
        self.submit(StartRequest(job, "file"))

    def _files_timer(self, job: str) -> None:
        self._timers.pop(f"files:{job}", None)
        self._files_ready(job)

    # ---- starting runs ----------------------------------------------------------

    def submit(self, request: StartRequest) -> str:
        """Start a run now, or queue it behind max_parallel / overlap; returns its id."""
        runtime = self.jobs[request.job]
        if request.wave is None:
            request.wave = request.run_id
        if self.stopping:
            self._record_never_started(request, "skipped", "keeper is stopping")
            return request.run_id
        if runtime.active and runtime.config.overlap != "allow":
            if request.trigger == "file":
                runtime.file_request = False  # the run in flight takes the files on
                return request.run_id
            if runtime.config.overlap == "skip":
                running = next(iter(runtime.active))
                self._record_never_started(
                    request, "skipped", f"run {running} still running (overlap = skip)"
                )
            elif runtime.queued:
                queued = runtime.queued[0].run_id
                self._record_never_started(
                    request, "skipped", f"run {queued} already queued (overlap = queue)"
                )
            else:
                runtime.queued.append(request)
                self.bus.publish("job_state", **self.job_view(runtime))
            return request.run_id
        if len(self.active) >= self.config.keeper.max_parallel:
            self._waiting.append(request)
            return request.run_id
        self._start(request)
        return request.run_id

    def _admit(self, runtime: JobRuntime, request: StartRequest) -> bool:
        now = time.time()
        refusal = self.quota.check(request.job, now, manual=request.trigger == "manual")
        if refusal is None:
            self.quota.record(request.job, now)
            self.outputs.changed()  # the quota it used goes out soon, not once it ends
            return True
        self._record_never_started(request, "skipped", refusal.message(now))
        if request.files:
            # The files stay in line and go once the quota frees a slot.
            self.handover.settle_run(
                request.job, request.run_id, request.files, "skipped", None, False
            )
            runtime.files_not_before = time.monotonic() + max(0.0, refusal.next_free - now)
            self._files_ready(request.job)
        return False

    def _new_record(self, request: StartRequest, started_at: datetime) -> RunRecord:
        return RunRecord(
            id=request.run_id,
            job=request.job,
            project=self.vault.name,
            started_at=started_at,
            status="running",
            trigger=request.trigger,
            host=self.host,
            cron=self.config.jobs[request.job].cron if request.job in self.config.jobs else None,
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
            env.update(files_env(request.files))
        return env, masker

    def _start(self, request: StartRequest) -> None:
        runtime = self.jobs[request.job]
        job = runtime.config
        if request.trigger == "file":
            runtime.file_request = False
            try:
                request.files = self.handover.claim(job.name, request.run_id)
            except Exception as error:  # the files stay where they are; the keeper goes on
                self.log.error(f"{job.name}: cannot take its waiting files: {described(error)}")
                return
            if not request.files:
                return  # another run took them: nothing to do, nothing to record
        elif request.files:
            self.handover.carry(job.name, request.files, request.run_id)
        if not self._admit(runtime, request):
            return
        started_at = utc_now()
        if self._starting_ahead and request.due_wall is not None:
            # Spawned at its slot, a moment from now: the record says so, and never that
            # the run started before its slot.
            started_at = max(started_at, datetime.fromtimestamp(request.due_wall, UTC))
        record = self._new_record(request, started_at)
        self.outputs.recent.append(record)
        # The running line goes first: if we die between it and the spawn, the next
        # keeper still finds the run and closes it as interrupted.
        self.history.append(record)
        try:
            cwd = inside_vault(self.vault, job.cwd, "cwd") if job.cwd else self.vault
            env, masker = self._run_env(runtime, request)
        except (EnvFileError, ValueError) as error:
            self._finish_unstarted(runtime, request, record, str(error), 126)
            return
        sink = OutputSink(runtime.log, request.run_id, masker, self.tz, self._job_line(job.name))
        spec = RunSpec(
            request.run_id, _argv(job.command), env, cwd, job.timeout, self.config.keeper.kill_grace
        )
        # Counted as in flight from now on, so overlap and max_parallel see it while the
        # spawner thread starts the child.
        active = ActiveRun(request, record, None, sink, runtime)
        runtime.active[request.run_id] = active
        self.active[request.run_id] = active
        self._idle.clear()
        self._to_spawn.append((active, spec))
        if len(self._to_spawn) >= SPAWN_BATCH and not self._starting_ahead:
            self._dispatch()  # a burst: let the spawner start on it while we prepare the rest
        elif len(self._to_spawn) == 1:
            assert self._loop is not None
            self._loop.call_soon(self._dispatch)

    def _dispatch(self) -> None:
        """Hand the runs started so far to the spawner, their running lines on disk first:
        if we die between the two, the next keeper still finds the runs and closes them as
        interrupted. One write for a whole burst of due runs."""
        if not self._to_spawn:
            return
        batch, self._to_spawn = self._to_spawn, []
        self.history.flush()
        self._spawner.submit([(token, token[1]) for token in batch])

    def _spawned(self, batch: list[SpawnResult]) -> None:
        # A burst comes back as one batch of up to thousands: taken a slice per loop turn,
        # which ends when a slot falls due, so the slot is not held up behind it. Even a
        # loop that is behind takes a little each turn, or runs would never finish.
        until = time.monotonic() + max(STARTED_MIN, min(self.sleep_for(), STARTED_SLICE))
        for index, ((active, spec), result) in enumerate(batch):
            self._run_started(active, spec, result)
            if index + 1 < len(batch) and time.monotonic() >= until:
                assert self._loop is not None
                self._loop.call_soon(self._spawned, batch[index + 1 :])
                return

    def _run_started(self, active: ActiveRun, spec: RunSpec, result: Spawned | Exception) -> None:
        request, record, runtime = active.request, active.record, active.runtime
        if isinstance(result, Exception):
            error = result
            self.active.pop(record.id, None)
            runtime.active.pop(record.id, None)
            reason = error.strerror if isinstance(error, OSError) and error.strerror else str(error)
            exit_code = 127 if isinstance(error, FileNotFoundError) else 126
            self._finish_unstarted(
                runtime, request, record, f"cannot start {spec.argv[0]}: {reason}", exit_code
            )
            return
        spawned = result
        # Opened before the Run, which hands on at once whatever was read ahead.
        active.sink.open(
            f"▶ started: trigger {request.trigger}, attempt {request.attempt}, "
            f"pid {spawned.process.pid}"
        )
        try:
            run = Run(spec, active.sink.feed, self._loop, spawned)
        except OSError as error:
            self.active.pop(record.id, None)
            runtime.active.pop(record.id, None)
            self._finish_unstarted(
                runtime, request, record, f"cannot watch the run: {error.strerror}", 126
            )
            return
        active.run = run
        if active.stop_asked is not None:
            run.stop(*active.stop_asked)
        lateness_ms = None
        if request.due_mono is not None:
            lateness_ms = (spawned.started_mono - request.due_mono) * 1000
        self.log.info(f"run {record.id} of {record.job} started ({request.trigger}, pid {run.pid})")
        self._publish_run("run_started", record, pid=run.pid, lateness_ms=lateness_ms)
        run.done.add_done_callback(lambda finished: self._finished(active, finished.result()))

    def _finish_unstarted(
        self,
        runtime: JobRuntime,
        request: StartRequest,
        record: RunRecord,
        error: str,
        exit_code: int,
    ) -> None:
        record.status, record.error, record.exit_code = "failure", error, exit_code
        record.completed_at = utc_now()
        record.duration_ms = 0
        self.history.append(record)
        self.log.error(f"run {record.id} of {record.job}: {error}")
        self._closed(runtime, request, record, None)
        self._drain_waiting()

    def _record_never_started(self, request: StartRequest, status: str, reason: str) -> None:
        """A run that never started (refused by the quota, skipped by overlap, cancelled
        while it waited): recorded, logged and counted like one that ran. A slot's run
        carries the slot's time, so a restart sees that slot taken care of."""
        now = utc_now()
        started_at = now
        if request.due_wall is not None:
            started_at = datetime.fromtimestamp(request.due_wall, UTC)
        record = self._new_record(request, started_at)
        record.status, record.completed_at, record.duration_ms, record.error = (
            status,
            max(now, started_at),
            0,
            reason,
        )
        self.outputs.recent.append(record)
        self.history.append(record)
        level = self.log.warning if status == "skipped" else self.log.info
        level(f"run {record.id} of {record.job} ({request.trigger}) {status}: {reason}")
        runtime = self.jobs.get(request.job)  # None once a reload dropped the job
        if runtime is not None and request.trigger == "file":
            runtime.file_request = False
        self._account(runtime, record, ran=False)

    def _finished(self, active: ActiveRun, outcome: RunOutcome) -> None:
        record = active.record
        record.status = outcome.status
        record.exit_code = outcome.exit_code
        record.error = outcome.error
        record.duration_ms = outcome.duration_ms
        record.completed_at = utc_now()
        self.history.append(record)
        active.sink.close(
            lambda: (
                f"■ {outcome.status}"
                + (f": {outcome.error}" if outcome.error else "")
                + f" after {format_duration(outcome.duration_ms / 1000)}"
            ),
            quiet_ok=outcome.status == "success",
        )
        self.active.pop(record.id, None)
        runtime = active.runtime
        runtime.active.pop(record.id, None)
        self._keep_log_open(runtime.log)
        level = self.log.info if outcome.status == "success" else self.log.warning
        level(
            f"run {record.id} of {record.job} {outcome.status}"
            + (f" ({outcome.error})" if outcome.error else "")
            + f" in {format_duration(outcome.duration_ms / 1000)}"
        )
        assert active.run is not None  # it ended, so it had started
        self._closed(runtime, active.request, record, (active.run.spec.env, active.sink.masker))
        self._drain_waiting()

    def _closed(
        self,
        runtime: JobRuntime,
        request: StartRequest,
        record: RunRecord,
        ran_with: tuple[dict[str, str], Masker] | None,
    ) -> None:
        """Everything that follows a run's final record. `ran_with` is the environment
        and masker of a run that started (its hooks get the same)."""
        job = runtime.config
        self._account(runtime, record, ran=True)
        failed = record.status in ("failure", "timeout")
        retrying = (
            failed
            and request.attempt <= job.retries
            and not self.stopping
            and self.jobs.get(job.name) is runtime
        )
        if request.files:
            back_in_line = self.handover.settle_run(
                job.name, record.id, request.files, record.status, record.error, retrying
            )
            if back_in_line and failed and not retrying:
                runtime.files_not_before = time.monotonic() + _backoff(job, request.attempt)
        if ran_with is not None:
            # on_failure once the last attempt failed, not for each attempt retried.
            hook = job.on_success if record.status == "success" else None
            if failed and not retrying:
                hook = job.on_failure
            if hook is not None:
                self._run_hook(runtime, record, hook, *ran_with)
        if self.stopping or self.jobs.get(job.name) is not runtime:
            return
        if retrying:
            delay = _backoff(job, request.attempt)
            retry = StartRequest(
                job.name, "retry", request.attempt + 1, list(request.files), wave=request.wave
            )
            self.log.info(
                f"{job.name}: attempt {request.attempt} {record.status}; "
                f"retry {retry.attempt} of {job.retries + 1} in {format_duration(delay)}"
            )
            assert self._loop is not None
            self._timers[retry.run_id] = self._loop.call_later(delay, self._retry, retry)
        if record.status == "success":
            self._advance_chains(job.name, request.wave or record.id)
        if runtime.queued and not self.state.is_paused(job.name):
            self.submit(runtime.queued.popleft())
        if self.handover.has_pending(job.name):
            self._files_ready(job.name)

    def _account(self, runtime: JobRuntime | None, record: RunRecord, ran: bool) -> None:
        """What every final record goes through: the job's last result, today's counts,
        metrics, Dashboard.md, the event and whoever waits for the run."""
        if runtime is not None:
            runtime.last = record
        self._count_today(record.status)
        self.outputs.ended(record, ran)
        self._publish_run("run_finished", record)
        self._settle_watchers(record)

    def _run_hook(
        self, runtime: JobRuntime, record: RunRecord, hook: Any, env: dict, masker: Masker
    ) -> None:
        which = "on_success" if record.status == "success" else "on_failure"
        sink = OutputSink(runtime.log, f"{record.id} {which}", masker, self.tz)
        spec = RunSpec(
            f"{record.id}-{which}",
            _argv(hook),
            {**env, "WATCHKEEPER_STATUS": record.status},
            self.vault,
            HOOK_TIMEOUT,
            self.config.keeper.kill_grace,
        )
        try:
            hook_run = Run(spec, sink.feed, self._loop)
        except OSError as error:
            self.log.error(
                f"{which} hook of run {record.id} ({record.job}) cannot start: {error.strerror}"
            )
            return

        self._hooks[spec.run_id] = hook_run
        self._idle.clear()

        def done(future: asyncio.Future[RunOutcome]) -> None:
            outcome = future.result()
            sink.flush()
            level = self.log.info if outcome.status == "success" else self.log.warning
            level(
                f"{which} hook of run {record.id} ({record.job}) {outcome.status}"
                + (f": {outcome.error}" if outcome.error else "")
            )
            self._hooks.pop(spec.run_id, None)
            self._update_idle()

        hook_run.done.add_done_callback(done)

    def _retry(self, request: StartRequest) -> None:
        self._timers.pop(request.run_id, None)
        if request.job in self.jobs:
            self.submit(request)

    def _keep_log_open(self, log: RotatingFile) -> None:
        """Job logs stay open between runs (an open per run costs more than the run's
        other writes together); the least recently used are closed past a limit."""
        self._open_logs[log] = None
        self._open_logs.move_to_end(log)
        while len(self._open_logs) > self._open_log_limit:
            oldest, _ = self._open_logs.popitem(last=False)
            if not any(active.runtime.log is oldest for active in self.active.values()):
                oldest.close()

    def _advance_chains(self, succeeded: str, wave: str) -> None:
        for name in self._dependents.get(succeeded, ()):
            dependent = self.jobs[name]
            after = dependent.config.after
            met = dependent.waves.setdefault(wave, set())
            met.add(succeeded)
            dependent.waves.move_to_end(wave)
            while len(dependent.waves) > WAVES_KEPT:
                dependent.waves.popitem(last=False)
            if not met.issuperset(after):
                continue
            del dependent.waves[wave]
            if not dependent.config.enabled:
                continue
            if self.state.is_paused(dependent.name):
                dependent.missed_while_paused += 1
                continue
            self.submit(StartRequest(dependent.name, "after", wave=wave))

    def _drain_waiting(self) -> None:
        while self._waiting and len(self.active) < self.config.keeper.max_parallel:
            request = self._waiting.popleft()
            runtime = self.jobs.get(request.job)
            if runtime is None:
                continue
            if self.state.is_paused(request.job) and request.trigger != "manual":
                # Paused while it waited for a free slot: it waits for the resume now, as
                # a queued run does (and the resume preview lists it).
                runtime.queued.append(request)
                self.bus.publish("job_state", **self.job_view(runtime))
                continue
            self.submit(request)
        self._update_idle()

    def _update_idle(self) -> None:
        if not self.active and not self._waiting and not self._hooks:
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
        return self.run_and_watch(job, trigger)[0]

    def run_and_watch(
        self, job: str, trigger: str = "manual"
    ) -> tuple[str, asyncio.Future[dict[str, Any]]]:
        """Start a run now; the future gets its final record (as JSON) when it ends."""
        if job not in self.jobs:
            raise KeyError(job)
        assert self._loop is not None
        request = StartRequest(job, trigger)
        # Watched before it is submitted: a run refused at once is final within submit().
        finished: asyncio.Future[dict[str, Any]] = self._loop.create_future()
        self._run_watchers.setdefault(request.run_id, []).append(finished)
        self.submit(request)
        self.wake()
        return request.run_id, finished

    def _settle_watchers(self, record: RunRecord) -> None:
        for finished in self._run_watchers.pop(record.id, ()):
            if not finished.done():
                finished.set_result(record.to_json())

    def _paused_itself(self, job: str | None) -> bool:
        """Whether the pause that pause(job) sets, and resume(job) lifts, is on."""
        if job is None:
            return self.state.paused
        if job not in self.jobs:
            raise KeyError(job)
        return job in self.state.paused_jobs

    def pause(self, job: str | None = None) -> bool:
        """False when it was paused already: nothing changes then."""
        if self._paused_itself(job):
            return False
        self._set_paused(job, True)
        return True

    def resume_plan(self, job: str | None = None, missed: bool = True) -> ResumePlan:
        if job is not None and job not in self.jobs:
            raise KeyError(job)
        return plan_resume(self, job, missed)

    def resume(self, job: str | None = None, missed: bool = True) -> bool:
        """Lift a pause. What piled up meanwhile is released as resume_plan() says;
        `missed=False` leaves out the catch-up runs of slots that passed. False when
        that pause was not on: nothing changes then."""
        if not self._paused_itself(job):
            return False
        waking = waking_jobs(self.state, list(self.jobs), job)
        # In the plan's order: queued, then catch-up; waiting files go once the pause is
        # lifted (_set_paused offers them).
        for name in waking:
            runtime = self.jobs[name]
            slots, runtime.missed_while_paused = runtime.missed_while_paused, 0
            if runtime.queued and not runtime.active:
                self.submit(runtime.queued.popleft())
            if not slots or not runtime.config.enabled:
                continue
            if missed and self.config.keeper.catch_up == "once":
                self.log.info(f"{name}: {slots} slot(s) missed while paused; catching up once")
                self.submit(StartRequest(name, "catch_up"))
            else:
                self.log.info(f"{name}: {slots} slot(s) missed while paused left out")
        self._set_paused(job, False)
        self.wake()
        return True

    def _set_paused(self, job: str | None, paused: bool) -> None:
        if job is None:
            self.state.paused = paused
        elif paused:
            self.state.paused_jobs.add(job)
        else:
            self.state.paused_jobs.discard(job)
        try:
            # The console saves the theme into the same file: keep what it chose.
            saved = update_state(self.vault, self._save_pauses)
            self.state.theme = saved.theme
        except OSError as error:
            self.log.error(f"cannot save {self.vault / 'Logs' / 'state.toml'}: {error.strerror}")
        self.log.info(f"{job or 'all jobs'} {'paused' if paused else 'resumed'}")
        self._state_changed([job] if job else list(self.jobs))

    def _save_pauses(self, state: RuntimeState) -> None:
        state.paused, state.paused_jobs = self.state.paused, set(self.state.paused_jobs)

    def _state_changed(self, jobs: list[str]) -> None:
        self.bus.publish("keeper_state", state=self.state_word)
        for name in jobs:
            runtime = self.jobs.get(name)
            if runtime is None:
                continue
            self.bus.publish("job_state", **self.job_view(runtime))
            if not self.state.is_paused(name) and self.handover.has_pending(name):
                self._files_ready(name)

    def cancel(self, run_id: str, reason: str = "cancelled by operator") -> bool:
        if run_id in self.active:
            self.active[run_id].stop("cancelled", reason)
            return True
        for queue in (self._waiting, *(runtime.queued for runtime in self.jobs.values())):
            for request in queue:
                if request.run_id == run_id:
                    queue.remove(request)
                    self._record_never_started(request, "cancelled", reason)
                    return True
        timer = self._timers.pop(run_id, None)
        if timer is not None:
            timer.cancel()
            return True
        return False

    def reload(self, reason: str) -> bool:
        """Re-read config, runtime state and the file ledger. A bad config is refused
        and the running one kept; runs in flight are never touched."""
        try:
            config = load_config(self.config.path)
            # Everything that could still fail is made before the running config is let go.
            fresh_jobs = self._fresh_runtimes(config)
        except ConfigError as error:
            return self._refused(reason, [str(issue) for issue in error.issues])
        except Exception as error:
            return self._refused(reason, [f"{self.config.path}: {described(error)}"])
        self.config = config
        self.tz = config.keeper.tz
        for name in list(self.jobs):
            if name not in config.jobs:
                self._drop_job(name)
        for name, job in config.jobs.items():
            runtime = self.jobs.get(name)
            fresh = fresh_jobs.get(name)
            if runtime is not None and fresh is None:
                runtime.config = job
                continue
            assert fresh is not None
            if runtime is not None:
                fresh.active, fresh.queued, fresh.last = (
                    runtime.active,
                    runtime.queued,
                    runtime.last,
                )
                for active in fresh.active.values():
                    active.runtime = fresh
            self.jobs[name] = fresh
            self._lay_out(fresh)
        self.quota.set_limits(config.keeper.max_runs_per_hour, self._job_limits(config))
        self._dependents = self._dependents_of(config)
        self.state = load_state(self.vault)
        self.ledger.load()
        patterns_before = self.handover.patterns
        self.handover.configure(config.jobs)
        if self.handover.patterns != patterns_before and self._watches is not None:
            self._watches.renew_vault()  # its new watch looks for the files already there
        else:
            self._rescan()
        self.log.info(f"config reloaded ({reason}): {len(config.jobs)} job(s)")
        self.bus.publish("config_reloaded", jobs=len(config.jobs))  # a refusal's warning clears
        self._state_changed(list(self.jobs))
        self.wake()
        return True

    def _fresh_runtimes(self, config: Config) -> dict[str, JobRuntime]:
        """The jobs of `config` that are new or changed, ready to take over."""
        fresh = {}
        for name, job in config.jobs.items():
            runtime = self.jobs.get(name)
            same = runtime is not None and _same_job(runtime.config, job)
            if not same or config.keeper.tz != self.tz:
                fresh[name] = self._runtime(job, config)
                self._first_dues(fresh[name])
        return fresh

    def _refused(self, reason: str, issues: list[str]) -> bool:
        self.log.error(
            f"config reload ({reason}) refused, keeping the running config: " + "; ".join(issues)
        )
        self.bus.publish("config_error", issues=issues)
        return False

    def _rescan(self) -> None:
        try:
            self.handover.rescan()
        except Exception as error:  # the files are looked for again at the next change
            self.log.error(f"cannot look for waiting files: {described(error)}")

    def _drop_job(self, name: str) -> None:
        """A job left the config: its runs in flight finish on their own; what waited
        for a slot or in its queue is recorded as skipped."""
        runtime = self.jobs.pop(name)
        waiting = [request for request in self._waiting if request.job == name]
        for request in [*waiting, *runtime.queued]:
            if request in self._waiting:
                self._waiting.remove(request)
            self._record_never_started(request, "skipped", "job removed from the config")
        runtime.queued.clear()
        self._update_idle()

    # ---- stopping --------------------------------------------------------------

    async def stop(self, grace: float | None = None) -> None:
        """Start nothing new, let runs finish for `grace`, then end their groups."""
        if grace is None:
            grace = self.config.keeper.shutdown_grace
        self.stopping = True
        self.wake()
        if self._watches is not None:
            self._watches.stop()
        self.handover.settler.cancel()
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        while self._waiting:
            self._record_never_started(self._waiting.popleft(), "skipped", "keeper stopped first")
        for runtime in self.jobs.values():
            while runtime.queued:
                self._record_never_started(
                    runtime.queued.popleft(), "skipped", "keeper stopped first"
                )
        if self.active or self._hooks:
            self.log.info(
                f"stopping: waiting up to {format_duration(grace)} for {len(self.active)} run(s)"
                f" and {len(self._hooks)} hook(s)"
            )
            await self.wait_idle(grace)
        if self.active or self._hooks:
            self.hurry()
            await self.wait_idle(self.config.keeper.kill_grace + 5)
        if self._watches is not None:
            await self._watches.close()
        await self.outputs.close()
        if self._vault_due is not None:
            self._vault_due.cancel()
        self.outputs.write_now()
        self._spawner.shutdown()
        for log in self._open_logs:
            log.close()
        for watchers in self._run_watchers.values():
            for finished in watchers:
                finished.cancel()
        self._run_watchers.clear()
        self.log.info("keeper stopped")
        self.bus.publish("keeper_state", state="STOPPED")
        self.history.close()
        self.ledger.out.close()
        self.log.close()

    @property
    def pending_timers(self) -> bool:
        """Retries and held-back file runs that are still to come."""
        return bool(self._timers)

    def hurry(self) -> None:
        """End every run (and hook) in flight now instead of waiting out the drain."""
        for active in list(self.active.values()):
            active.stop("cancelled", "keeper stopped")
        for hook in list(self._hooks.values()):
            hook.stop("cancelled", "keeper stopped")

    async def wait_idle(self, timeout: float | None = None) -> bool:
        """True once no run is in flight or waiting for a slot, and every record is on
        disk (a run's final line is written a loop turn after the run has closed)."""
        try:
            async with asyncio.timeout(timeout):
                await self._idle.wait()
        except TimeoutError:
            return False
        self.history.flush()
        return True

    # ---- views --------------------------------------------------------------------

    @property
    def state_word(self) -> str:
        if self.stopping:
            return "STOPPING"
        return "PAUSED" if self.state.paused else "RUNNING"

    def next_run(self, runtime: JobRuntime) -> datetime | None:
        """When its next slot falls; None while it is paused (the slot would not run)."""
        if self.state.is_paused(runtime.name) or not runtime.next_due:
            return None
        wall_now, mono_now = time.time(), time.monotonic()
        moments = [
            due if schedule.clock == "wall" else wall_now + (due - mono_now)
            for schedule, due in zip(runtime.schedules, runtime.next_due, strict=False)
        ]
        return wall_moment(min(moments), self.tz)

    def job_view(self, runtime: JobRuntime) -> dict[str, Any]:
        job = runtime.config
        next_run = self.next_run(runtime)
        now = time.monotonic()
        files = self.handover.jobs.get(job.name)
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
                    "pid": active.run.pid if active.run else None,
                    "trigger": active.request.trigger,
                    "elapsed_s": round(now - active.run.started_mono, 3) if active.run else 0.0,
                }
                for run_id, active in runtime.active.items()
            ],
            "queued": len(runtime.queued),
            "files_pending": len(files.pending) if files else 0,
            "missed_while_paused": runtime.missed_while_paused,
        }

    def quota_view(self) -> list[dict[str, Any]]:
        return usage_view(self.quota.usage(time.time()))

    def snapshot(self) -> dict[str, Any]:
        return {
            **self.snapshot_head(),
            "jobs": [self.job_view(runtime) for runtime in self.jobs.values()],
        }

    def snapshot_head(self) -> dict[str, Any]:
        """The snapshot but its job views."""
        return {
            "vault": str(self.vault),
            "state": self.state_word,
            "pid": os.getpid(),
            "host": self.host,
            "started_at": hist.iso(self.started_at),
            "uptime_s": round(time.monotonic() - self.started_mono, 1),
            "paused": self.state.paused,
            "running": len(self.active),
            "waiting": len(self._waiting),
            "today": dict(self.today),
            "quota": self.quota_view(),
            "runs_last_hour": self.quota.runs_last_hour(time.time()),
        }

    # ---- plumbing -----------------------------------------------------------------

    def _job_line(self, job: str) -> Callable[[str], None]:
        def publish(line: str) -> None:
            self.bus.publish("log_line", source=job, line=line)

        return publish

    def _publish_run(self, kind: str, record: RunRecord, **extra: Any) -> None:
        # Two of these a run: a busy headless keeper skips the stamps and dicts nobody reads.
        if self.bus.has_subscribers:
            self.bus.publish(kind, **record.to_json(), **extra)

    def _publish_log_line(self, stamp: str, level: str, message: str) -> None:
        self.bus.publish("log_line", source="keeper", time=stamp, level=level, line=message)

    def _log_write_failed(self, path: Path, error: OSError) -> None:
        self.log.error(f"cannot write {path}: {error.strerror}; job output dropped until it can")

