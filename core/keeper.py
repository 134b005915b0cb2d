"""The keeper: sleeps until the next due slot, starts runs, records every one of them.

A facade over parts with one job each (see ARCHITECTURE.md): `Slots` knows when runs
are due, `Runs` carries each from request to record, `Chains` the `after` waves,
`views` the shapes it shows itself in. It reaches the world through three seams
(core/seams.py): a Clock, an Executor, a Store. Everything runs on one asyncio loop,
which sleeps until the nearest slot or until something (run-now, pause, a finished
run, a file) wakes it. No tick.
"""

from __future__ import annotations

import asyncio
import os
import socket
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from watchkeeper.core.breaker import Breakers
from watchkeeper.core.chains import Chains
from watchkeeper.core.config import Config, ConfigError, load_config
from watchkeeper.core.events import EventBus
from watchkeeper.core.faults import described
from watchkeeper.core.firing import Firing
from watchkeeper.core.handover import Handover
from watchkeeper.core.jobtable import JobTable, job_limits
from watchkeeper.core.limits_apply import probe_at_start
from watchkeeper.core.lock import VaultLock
from watchkeeper.core.logs import open_keeper_log
from watchkeeper.core.notify import Notifier
from watchkeeper.core.outputs import Outputs
from watchkeeper.core.params import check_given
from watchkeeper.core.pausing import Pauses
from watchkeeper.core.quota import WINDOW, Quota
from watchkeeper.core.recovery import close_interrupted, missed_while_down, prune_worktrees
from watchkeeper.core.retention import LogRetention
from watchkeeper.core.runner import LocalExecutor
from watchkeeper.core.runs import Runs
from watchkeeper.core.runtime import ActiveRun, JobRuntime, StartRequest, UnknownJob
from watchkeeper.core.seams import Clock, Executor, Store, SystemClock, utc
from watchkeeper.core.slots import Slots
from watchkeeper.core.state import RuntimeState
from watchkeeper.core.store import JsonlStore
from watchkeeper.core.turn_end import TurnEnd
from watchkeeper.core.views import DayCounts, Views

if TYPE_CHECKING:
    from watchkeeper.core.control_protocol import JobView, Snapshot
    from watchkeeper.core.resume import ResumePlan
    from watchkeeper.core.triage import DecisionJson
    from watchkeeper.core.watchers import Watches

__all__ = ["Keeper", "StartRequest", "UnknownJob"]


class Keeper:
    def __init__(
        self,
        config: Config,
        lock: VaultLock | None = None,
        clock: Clock | None = None,
        store: Store | None = None,
        executor: Callable[[Callable[..., None]], Executor] = LocalExecutor,
    ) -> None:
        self.config, self.vault, self.lock, self.tz = config, config.vault, lock, config.keeper.tz
        self.clock = clock or SystemClock()
        self.host = socket.gethostname()
        self.bus = EventBus(self._log_listened)
        settings = config.keeper
        self.log = open_keeper_log(
            self.vault / "Logs",
            *(settings.log_mode, settings.log_max_size, settings.log_backups, self.tz),
        )
        self.notifier = Notifier(self.log, self.host)
        self.retention = LogRetention(
            self.vault / "Logs", lambda: self.config.keeper.log_retention_days, self.log
        )
        self.store: Store = store or JsonlStore(self.vault, self.log)
        self.history, self.ledger = self.store.history, self.store.ledger
        self.handover = Handover(self.vault, self.ledger, self.log, self.files_ready)
        self.handover.unique.approve_to = lambda: self.config.vault_settings.approve_to
        self.handover.unique.announce = lambda **data: self.bus.publish("item_decided", **data)
        self.outputs = Outputs(self)
        self.state: RuntimeState = self.store.load_state()
        self.quota = Quota(config.keeper.max_runs_per_hour, job_limits(config))
        self.slots = Slots(self.clock)
        self.table = JobTable(config, self.slots, self._log_write_failed)
        self.jobs = self.table.jobs
        self.chains = Chains(config)
        self.runs = Runs(self, executor, self.chains)
        self.pauses = Pauses(self)
        self.firing = Firing(self, self.slots, self.runs)
        self.views = Views(self)
        self.active: dict[str, ActiveRun] = self.runs.active
        self.started_at, self.started_mono = utc(self.clock), self.clock.monotonic()
        self.stopping = False
        self.day = DayCounts(self.clock)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._watches: Watches | None = None  # from serve() on

    async def start(self, catch_up: bool = True, files: bool = True) -> None:
        """Close what a dead keeper left open, learn recent results, lay out the
        schedule, catch up what downtime missed, and find files already waiting."""
        self._loop = self.outputs.loop = asyncio.get_running_loop()
        self.runs.attach(self._loop)
        self.log.defer = TurnEnd.of(self._loop).defer
        self.store.attach(self._loop)
        self.notifier.attach(self._loop, self.config)
        previous = self.lock.previous if self.lock else {}
        keeper = self.config.keeper
        interrupted = await close_interrupted(
            self.store, previous, keeper.kill_grace, self.log, self.clock
        )
        await prune_worktrees(self.config, interrupted, self.log)
        await probe_at_start(self.config.jobs.values(), self.log)
        now = self.clock.time()
        self.quota.rebuild(self.store.starts_since(now - WINDOW), now)
        self.outputs.read_history(self.store)
        recent = self.store.last_runs(self.jobs, self.tz)
        self.views.learn(recent)
        self.notifier.learn(recent.last)
        self.notifier.lost(interrupted)
        if recent.bad_lines:
            self.log.warning(f"history: skipped {recent.bad_lines} unreadable line(s)")
        self.table.lay_out()
        pruned = self.store.prune(keeper.history_retention_days, utc(self.clock).date())
        if pruned:
            self.log.info(f"history retention removed {len(pruned)} old segment(s)")
        self.retention.start()
        self.log.info(
            f"keeper started: pid {os.getpid()}, {len(self.jobs)} job(s), vault {self.vault}"
        )
        self.bus.publish("keeper_state", state=self.state_word)
        if catch_up and (keeper.catch_up == "once" or self.notifier.wants("missed")):
            for name in missed_while_down(self.jobs, recent.last, self.slots, self.state):
                self.notifier.missed(name, "no keeper was running", self.clock.time())
                if keeper.catch_up == "once":
                    self.log.info(f"{name}: a slot passed since its last run; catching up once")
                    self.submit(StartRequest(name, "catch_up"))
        self.ledger.load()
        self.handover.configure(self.config.jobs)
        self.handover.cut_off(interrupted)
        if files:
            self._rescan()

    # ---- the loop ----------------------------------------------------------------------

    def wake(self) -> None:
        self.firing.wake()

    async def serve(self) -> None:
        """Fire due slots until stop() is called; watch the vault meanwhile."""
        from watchkeeper.core.watchers import Watches  # a local run or --once watches nothing

        self._watches = Watches(self)
        await self.firing.serve()

    def sleep_for(self) -> float:
        return self.slots.sleep_for()

    def behind(self) -> bool:
        """Slots are due that the loop has not fired yet."""
        return self.firing.behind()

    def files_ready(self, job: str) -> None:
        self.runs.files_ready(job)

    # ---- operator actions --------------------------------------------------------------

    def submit(self, request: StartRequest) -> str:
        """Start a run now, or queue it behind max_parallel / overlap; returns its id."""
        return self.runs.request(request)

    def _known(self, job: str) -> JobRuntime:
        runtime = self.jobs.get(job)
        if runtime is None:
            raise UnknownJob(job)
        return runtime

    def run_now(
        self, job: str, trigger: str = "manual", params: dict[str, str] | None = None
    ) -> str:
        return self.run_and_watch(job, trigger, params)[0]

    def run_and_watch(
        self, job: str, trigger: str = "manual", params: dict[str, str] | None = None
    ) -> tuple[str, asyncio.Future[dict[str, Any]]]:
        """Start a run now; the future gets its final record (as JSON) when it ends.
        `params`: values for the job's params (ParamError, before anything runs, for
        ones it does not take)."""
        given = check_given(self._known(job).config, params or {})
        request = StartRequest(job, trigger, params=given or None)
        finished = self.runs.watch(request)
        self.submit(request)
        self.wake()
        return request.run_id, finished

    def pause(self, job: str | None = None) -> bool:
        """False when it was paused already: nothing changes then."""
        return self.pauses.pause(job)

    def resume_plan(self, job: str | None = None, missed: bool = True) -> ResumePlan:
        from watchkeeper.core.resume import plan_resume  # a local run never asks: not in its start

        if job is not None:
            self._known(job)
        return plan_resume(self, job, missed)

    def resume(self, job: str | None = None, missed: bool = True) -> bool:
        """Lift a pause, releasing what piled up as resume_plan() says (`missed=False`:
        without the catch-up runs of slots that passed). False when it was not on."""
        return self.pauses.resume(job, missed)

    def cancel(self, run_id: str, reason: str = "cancelled by operator") -> bool:
        return self.runs.cancel(run_id, reason)

    def decide(
        self, path: str, outcome: str, reason: str | None = None, by: str | None = None
    ) -> DecisionJson:
        """Approve or dismiss an item waiting in Needs_Action/ (core/triage.py); NotAnItem
        for a path or reason that will not do."""
        from watchkeeper.core.triage import decide  # a local run never asks: not in its start

        approve_to = self.config.vault_settings.approve_to
        decision = decide(self.vault, approve_to, self.ledger, path, outcome, reason, by)
        self.log.info(decision.said())
        self.bus.publish("item_decided", **decision.to_json())
        return decision.to_json()

    def reload(self, reason: str) -> bool:
        """Re-read config, runtime state and the file ledger. A bad config is refused
        and the running one kept; runs in flight are never touched."""
        try:
            config = load_config(self.config.path)
            fresh = self.table.fresh(config, self.config)
        except ConfigError as error:
            return self._refused(reason, [str(issue) for issue in error.issues])
        except Exception as error:
            return self._refused(reason, [f"{self.config.path}: {described(error)}"])
        self.config, self.tz = config, config.keeper.tz
        self.notifier.configure(config)
        self.table.apply(config, fresh, self.runs.drop)
        self.quota.set_limits(config.keeper.max_runs_per_hour, job_limits(config))
        self.chains.configure(config)
        self.state = self.store.load_state()
        self.ledger.load()
        patterns_before = self.handover.patterns
        self.handover.configure(config.jobs)
        if self.handover.patterns != patterns_before and self._watches is not None:
            self._watches.renew_vault()  # its new watch looks for the files already there
        else:
            self._rescan()
        self.log.info(f"config reloaded ({reason}): {len(config.jobs)} job(s)")
        self.bus.publish("config_reloaded", jobs=len(config.jobs))  # a refusal's warning clears
        self.pauses.changed(list(self.jobs))
        self.wake()
        return True

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

    # ---- stopping ----------------------------------------------------------------------

    async def stop(self, grace: float | None = None) -> None:
        """Start nothing new, let runs finish for `grace`, then end their groups."""
        if grace is None:
            grace = self.config.keeper.shutdown_grace
        self.stopping = True
        self.wake()
        if self._watches is not None:
            self._watches.stop()
        self.handover.settler.cancel()
        await self.runs.drain(grace, self.config.keeper.kill_grace)
        if self._watches is not None:
            await self._watches.close()
        await self.outputs.close()
        self.outputs.write_now()
        self.runs.close()
        await self.notifier.close()
        await self.retention.stop()
        self.log.info("keeper stopped")
        self.bus.publish("keeper_state", state="STOPPED")
        self.store.close()
        self.log.close()

    @property
    def pending_timers(self) -> bool:
        """Retries and held-back file runs that are still to come."""
        return bool(self.runs.timers)

    def hurry(self) -> None:
        """End every run (and hook) in flight now instead of waiting out the drain."""
        self.runs.hurry()

    async def wait_idle(self, timeout: float | None = None) -> bool:
        """True once no run is in flight or waiting, and every record is on disk."""
        return await self.runs.wait_idle(timeout)

    # ---- views -------------------------------------------------------------------------

    @property
    def state_word(self) -> str:
        if self.stopping:
            return "STOPPING"
        return "PAUSED" if self.state.paused else "RUNNING"

    def job_view(self, runtime: JobRuntime) -> JobView:
        return self.views.job(runtime)

    @property
    def breakers(self) -> Breakers:
        """The http jobs' circuit breakers (core/breaker.py)."""
        return self.runs.route.breakers

    def snapshot(self) -> Snapshot:
        return self.views.snapshot()

    def snapshot_head(self) -> Snapshot:
        """The snapshot with its job views left out."""
        return self.views.head()

    @property
    def waiting(self) -> deque[StartRequest]:
        """Runs waiting for a place under max_parallel."""
        return self.runs.waiting

    # ---- what the parts ask of the keeper (core/host.py) -------------------------------

    def count_today(self, status: str) -> None:
        self.day.count(status, self.tz)

    def publish_job(self, runtime: JobRuntime) -> None:
        self.bus.publish("job_state", **self.job_view(runtime))

    def _publish_log_line(self, stamp: str, level: str, message: str) -> None:
        self.bus.publish("log_line", source="keeper", time=stamp, level=level, line=message)

    def _log_listened(self, listened: bool) -> None:
        # Keeper log lines reach the bus only while someone reads it (two lines a run).
        listeners = self.log.listeners
        (listeners.append if listened else listeners.remove)(self._publish_log_line)

    def _log_write_failed(self, path: Path, error: OSError) -> None:
        self.log.error(f"cannot write {path}: {error.strerror}; job output dropped until it can")
