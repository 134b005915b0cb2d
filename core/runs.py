"""A run's life, from request to final record, as one state machine:

    request ──admit──► skipped │ queued (behind the job's run) │ waiting (max_parallel)
       │                         └──────── released later ────────┘
       ▼
    prepare ──► refused (quota) │ failed unstarted (cwd, env_file)      [record, running line]
       ▼
    spawn ────► failed unstarted (exec)          [the Executor, a batch at a time]
       ▼
    running ──► ended ──► close: record, hooks, retry, `after` chains, the next in line

The first arrows are methods here (request, _prepare, spawn, _started, _running); the
end of a run, from `ended` on, is core/run_end.py's. A run that never starts goes
through RunEnd.never_started() and is recorded like one that ran. Observers (tests,
benchmarks) hear about runs through `on_readied` (about to be prepared), `on_started`
(back from the executor, started) and `on_never_started` instead of patching these
methods.
"""

from __future__ import annotations

import asyncio
import functools
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from watchkeeper.core import tuning
from watchkeeper.core.admission import decide
from watchkeeper.core.chains import Chains
from watchkeeper.core.environment import EnvFileError, inside_vault
from watchkeeper.core.faults import described
from watchkeeper.core.hooks import Hooks
from watchkeeper.core.host import Host
from watchkeeper.core.http_job import HttpRouting
from watchkeeper.core.isolation import Isolation
from watchkeeper.core.output import OutputSink
from watchkeeper.core.run_end import RunEnd, RunWatch, publish_run
from watchkeeper.core.runner import RunSpec
from watchkeeper.core.runprep import run_env, run_record, run_spec
from watchkeeper.core.runtime import ActiveRun, JobRuntime, OpenLogs, StartRequest
from watchkeeper.core.seams import Executor, Started, utc
from watchkeeper.core.units import format_duration

if TYPE_CHECKING:
    from watchkeeper.core.config_http import BreakerConfig


class Runs:
    def __init__(
        self,
        host: Host,
        make_executor: Callable[[Callable[..., None]], Executor],
        chains: Chains,
    ) -> None:
        self.host = host
        self.executor = make_executor(self._started)
        # Runs go through this: http jobs' calls are made here, in the keeper
        # (core/http_job.py), every other run goes on to the executor given.
        self.route = HttpRouting(
            self.executor, self._started, host.clock, host.tz, self._breaker_of, self._breaker_moved
        )
        self.active: dict[str, ActiveRun] = {}
        self.waiting: deque[StartRequest] = deque()  # for a free place under max_parallel
        self.timers: dict[str, asyncio.TimerHandle] = {}  # retries, held-back file runs
        self.hooks = Hooks(host, self.executor, self._update_idle)
        self.end = RunEnd(host, chains, self)
        self.isolation = Isolation(host.vault, host.log)
        self.watchers = self.end.watchers  # a run's final record, as JSON, when it ends
        self.on_readied: list[Callable[[StartRequest], None]] = []
        self.on_started: list[Callable[[ActiveRun, Started], None]] = []
        self.on_never_started = self.end.on_never_started
        # Runs prepared this loop turn, handed to the executor together (see spawn()): each
        # (token, spec), the token (active, spec) coming back with the executor's result.
        self._to_spawn: list[tuple[tuple[ActiveRun, RunSpec], RunSpec]] = []
        self._ahead = False  # runs prepared now wait for their slot to be spawned
        self._caller_spawns = False  # ... or for the spawn() that ends the caller's batch
        self.logs = OpenLogs()
        self.loop: asyncio.AbstractEventLoop | None = None
        # Set while no run is in flight or waiting (an Event binds to a loop once awaited).
        self.idle = asyncio.Event()
        self.idle.set()

    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.logs.fit_to_limit()
        self.route.warm(job.http is not None for job in self.host.config.jobs.values())

    # ---- request ---------------------------------------------------------------------

    def request(self, request: StartRequest) -> str:
        """Start a run now, or queue it behind max_parallel / overlap; returns its id."""
        host = self.host
        runtime = host.jobs[request.job]
        if request.wave is None:
            request.wave = request.run_id
        verdict = decide(
            request.trigger,
            runtime.config.overlap,
            runtime.active,
            [runtime.queued[0].run_id] if runtime.queued else (),
            len(self.active),
            host.config.keeper.max_parallel,
            host.stopping,
        )
        if verdict.action == "start":
            self._prepare(request)
        elif verdict.action == "wait":
            self.waiting.append(request)
        elif verdict.action == "queue":
            runtime.queued.append(request)
            host.publish_job(runtime)
        elif verdict.action == "absorbed":
            runtime.file_request = False
        else:
            self.end.never_started(request, "skipped", verdict.reason)
        return request.run_id

    def files_ready(self, job: str) -> None:
        """Files wait for `job`: start a run for them unless one will pick them up."""
        host = self.host
        runtime = host.jobs.get(job)
        if runtime is None or not runtime.config.enabled or host.stopping:
            return
        if host.state.is_paused(job) or runtime.file_request:
            return
        if runtime.active and runtime.config.overlap != "allow":
            return  # the run in flight takes them on when it ends
        wait = runtime.files_not_before - host.clock.monotonic()
        if wait > 0:
            key = f"files:{job}"
            if key not in self.timers and self.loop is not None:
                self.timers[key] = self.loop.call_later(wait, self._files_timer, job)
            return
        runtime.file_request = True
        self.request(StartRequest(job, "file"))

    def _files_timer(self, job: str) -> None:
        self.timers.pop(f"files:{job}", None)
        self.files_ready(job)

    # ---- prepare ---------------------------------------------------------------------

    def prepare_ahead(self, prepare: Callable[[], None]) -> None:
        """Runs requested within `prepare` are readied now; the caller spawns them at
        their slot."""
        self._ahead = True
        try:
            prepare()
        finally:
            self._ahead = False

    def start_batch(self, prepare: Callable[[], None]) -> None:
        """Runs requested within `prepare` are spawned as it ends (in SPAWN_BATCH lots as
        they come), not a loop turn later."""
        self._caller_spawns = True
        try:
            prepare()
        finally:
            self._caller_spawns = False
        self.spawn()

    def _breaker_of(self, job: str) -> BreakerConfig | None:
        runtime = self.host.jobs.get(job)
        return runtime.config.breaker if runtime is not None else None

    def _breaker_moved(self, job: str, message: str) -> None:
        self.host.log.warning(f"{job}: {message}")
        if (runtime := self.host.jobs.get(job)) is not None:
            self.host.publish_job(runtime)

    def _admit(self, runtime: JobRuntime, request: StartRequest) -> bool:
        host = self.host
        if runtime.config.breaker is not None and (circuit := self.route.refusal(request.job)):
            self.end.never_started(request, "skipped", circuit)
            return False
        now = host.clock.time()
        refusal = host.quota.check(request.job, now, manual=request.trigger == "manual")
        if refusal is None:
            host.quota.record(request.job, now)
            host.outputs.changed()  # the quota it used goes out soon, not once it ends
            return True
        self.end.never_started(request, "skipped", refusal.message(now))
        if request.files:
            # The files stay in line and go once the quota frees a slot.
            host.handover.settle_run(
                request.job, request.run_id, request.files, "skipped", None, False
            )
            runtime.files_not_before = host.clock.monotonic() + max(0.0, refusal.next_free - now)
            self.files_ready(request.job)
        return False

    def _prepare(self, request: StartRequest) -> None:
        host = self.host
        runtime = host.jobs[request.job]
        job = runtime.config
        for observe in self.on_readied:
            observe(request)
        if request.trigger == "file":
            runtime.file_request = False
            try:
                request.files = host.handover.claim(job.name, request.run_id)
            except Exception as error:  # the files stay where they are; the keeper goes on
                host.log.error(f"{job.name}: cannot take its waiting files: {described(error)}")
                return
            if not request.files:
                return  # another run took them: nothing to do, nothing to record
        elif request.files:
            host.handover.carry(job.name, request.files, request.run_id)
        if not self._admit(runtime, request):
            return
        started_at = utc(host.clock)
        if self._ahead and request.due_wall is not None:
            # Spawned at its slot, a moment from now: the record says so, and never that
            # the run started before its slot.
            started_at = max(started_at, datetime.fromtimestamp(request.due_wall, UTC))
        record = run_record(request, started_at, host.config, host.vault, host.host)
        if job.isolate:  # in its running line, so a restart after a kill finds the worktree
            from watchkeeper.core.worktree import branch_name  # isolated jobs' only

            record.worktree_branch = branch_name(job.name, request.run_id)
        host.outputs.recent.append(record)
        # The running line goes first: if we die between it and the spawn, the next
        # keeper still finds the run and closes it as interrupted.
        host.history.append(record)
        try:
            cwd = inside_vault(host.vault, job.cwd, "cwd") if job.cwd else host.vault
            env, masker = run_env(runtime, request, host.vault)
        except (EnvFileError, ValueError) as error:
            self.end.failed_unstarted(runtime, request, record, str(error), 126)
            return
        sink = OutputSink(runtime.log, request.run_id, masker, host.tz, host.bus.lines_of(job.name))
        spec = run_spec(request, host.config, env, cwd)
        # Counted as in flight from now on, so overlap and max_parallel see it while the
        # executor starts the child.
        active = ActiveRun(request, record, None, sink, runtime)
        runtime.active[request.run_id] = active
        self.active[request.run_id] = active
        self.idle.clear()
        if job.isolate:
            self.isolation.prepare(active, spec, self._ready, self._no_worktree)
            return
        self._ready(active, spec)

    def _ready(self, active: ActiveRun, spec: RunSpec) -> None:
        self._to_spawn.append(((active, spec), spec))
        if len(self._to_spawn) >= tuning.SPAWN_BATCH and not self._ahead:
            self.spawn()  # a burst: let the executor start on it while we prepare the rest
        elif len(self._to_spawn) == 1 and not (self._caller_spawns or self._ahead):
            assert self.loop is not None
            self.loop.call_soon(self.spawn)

    def _no_worktree(self, active: ActiveRun, error: str) -> None:
        active.record.worktree_branch = None
        self.end.forget(active)
        self.end.failed_unstarted(active.runtime, active.request, active.record, error, 126)

    # ---- spawn -----------------------------------------------------------------------

    def spawn(self) -> None:
        """Hand the runs prepared so far to the executor, their running lines on disk
        first: if we die between the two, the next keeper still finds the runs and
        closes them as interrupted. One write for a whole burst of due runs."""
        if not self._to_spawn:
            return
        batch, self._to_spawn = self._to_spawn, []
        self.host.history.flush()
        self.route.submit(batch)

    def _started(self, batch: list[tuple[Any, Any]]) -> None:
        # A burst comes back as one batch of up to thousands: taken a slice per loop turn,
        # which ends when a slot falls due, so the slot is not held up behind it. Even a
        # loop that is behind takes a little each turn, or runs would never finish.
        clock = self.host.clock
        until = 0.0  # a batch of one, the usual, is never sliced: no clock read for it
        if len(batch) > 1:
            until = clock.monotonic() + max(
                tuning.STARTED_MIN, min(self.host.sleep_for(), tuning.STARTED_SLICE)
            )
        for index, ((active, spec), result) in enumerate(batch):
            self._running(active, spec, result)
            if index + 1 < len(batch) and clock.monotonic() >= until:
                assert self.loop is not None
                self.loop.call_soon(self._started, batch[index + 1 :])
                return

    def _running(self, active: ActiveRun, spec: RunSpec, result: Any) -> None:
        host = self.host
        request, record, runtime = active.request, active.record, active.runtime
        if isinstance(result, Exception):
            error = result
            reason = error.strerror if isinstance(error, OSError) and error.strerror else str(error)
            exit_code = 127 if isinstance(error, FileNotFoundError) else 126
            self.end.forget(active)
            self.isolation.discard(active)
            self.end.failed_unstarted(
                runtime, request, record, f"cannot start {spec.argv[0]}: {reason}", exit_code
            )
            return
        for observe in self.on_started:
            observe(active, result)
        # Opened before the run is watched, which hands on at once whatever was read ahead.
        active.sink.open(
            f"▶ started: trigger {request.trigger}, attempt {request.attempt}, pid {result.pid}"
        )
        try:
            run = self.route.watch(spec, result, active.sink.feed)
        except OSError as error:
            self.end.forget(active)
            self.isolation.discard(active)
            self.end.failed_unstarted(
                runtime, request, record, f"cannot watch the run: {error.strerror}", 126
            )
            return
        active.run = run
        if active.stop_asked is not None:
            run.stop(*active.stop_asked)
        lateness_ms = None
        if request.due_mono is not None:
            lateness_ms = (run.started_mono - request.due_mono) * 1000
        host.log.info(f"run {record.id} of {record.job} started ({request.trigger}, pid {run.pid})")
        publish_run(host, "run_started", record, pid=run.pid, lateness_ms=lateness_ms)
        if request.run_id in self.isolation.trees:  # its worktree is settled first
            run.on_end(lambda outcome: self.isolation.finish(active, outcome, self.end.ended))
        else:
            run.on_end(functools.partial(self.end.ended, active))

    def release_waiting(self) -> None:
        host = self.host
        while self.waiting and len(self.active) < host.config.keeper.max_parallel:
            request = self.waiting.popleft()
            runtime = host.jobs.get(request.job)
            if runtime is None:
                continue
            if host.state.is_paused(request.job) and request.trigger != "manual":
                # Paused while it waited for a free place: it waits for the resume now, as
                # a queued run does (and the resume preview lists it).
                runtime.queued.append(request)
                host.publish_job(runtime)
                continue
            self.request(request)
        self._update_idle()

    def _update_idle(self) -> None:
        if not self.active and not self.waiting and not self.hooks.running:
            self.idle.set()

    # ---- operator actions ------------------------------------------------------------

    def cancel(self, run_id: str, reason: str) -> bool:
        if run_id in self.active:
            active = self.active[run_id]
            active.stop("cancelled", reason)
            # A run waiting for a worker may wait long: an executor that can withdraw it
            # (core/cluster/remote.py) ends it now rather than once a worker takes it.
            withdraw = getattr(self.executor, "cancel", None)
            if active.run is None and withdraw is not None:
                withdraw(run_id, "cancelled", reason)
            return True
        queues = (self.waiting, *(runtime.queued for runtime in self.host.jobs.values()))
        for queue in queues:
            for request in queue:
                if request.run_id == run_id:
                    queue.remove(request)
                    self.end.never_started(request, "cancelled", reason)
                    return True
        timer = self.timers.pop(run_id, None)
        if timer is not None:
            timer.cancel()
            return True
        return False

    def drop(self, runtime: JobRuntime) -> None:
        """A job left the config: its runs in flight finish on their own; what waited
        for a place or in its queue is recorded as skipped."""
        waiting = [request for request in self.waiting if request.job == runtime.name]
        for request in [*waiting, *runtime.queued]:
            if request in self.waiting:
                self.waiting.remove(request)
            self.end.never_started(request, "skipped", "job removed from the config")
        runtime.queued.clear()
        self._update_idle()

    def skip_all_waiting(self, reason: str) -> None:
        for timer in self.timers.values():
            timer.cancel()
        self.timers.clear()
        while self.waiting:
            self.end.never_started(self.waiting.popleft(), "skipped", reason)
        for runtime in self.host.jobs.values():
            while runtime.queued:
                self.end.never_started(runtime.queued.popleft(), "skipped", reason)

    def hurry(self) -> None:
        """End every run (and hook) in flight now instead of waiting out the drain."""
        for active in list(self.active.values()):
            active.stop("cancelled", "keeper stopped")
        self.hooks.hurry()

    async def drain(self, grace: float, kill_grace: float) -> None:
        """As the keeper stops: what waits is skipped, what is in flight (runs and hooks)
        gets `grace` to end, then is ended."""
        self.skip_all_waiting("keeper stopped first")
        hooks = self.hooks.running
        if self.active or hooks:
            self.host.log.info(
                f"stopping: waiting up to {format_duration(grace)} for {len(self.active)} run(s)"
                f" and {len(hooks)} hook(s)"
            )
            await self.wait_idle(grace)
        if self.active or hooks:
            self.hurry()
            await self.wait_idle(kill_grace + 5)

    async def wait_idle(self, timeout: float | None = None) -> bool:
        """True once no run is in flight or waiting for a slot, and every record is on
        disk (a run's final line waits for the end of its loop turn: core/turn_end.py)."""
        try:
            async with asyncio.timeout(timeout):
                await self.idle.wait()
        except TimeoutError:
            return False
        self.host.history.flush()
        return True

    def watch(self, request: StartRequest) -> RunWatch:
        """A future for the run's final record (as JSON). Watch before requesting it: a
        run refused at once is final within request()."""
        assert self.loop is not None
        finished: RunWatch = self.loop.create_future()
        self.watchers.setdefault(request.run_id, []).append(finished)
        return finished

    def close(self) -> None:
        self.route.shutdown()
        self.logs.close()
        self.end.close()
