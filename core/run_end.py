"""The end of a run (the last arrows of core/runs.py's state machine): its final record,
and everything that follows it: the job's last result and today's counts, metrics, the
`run_finished` event and whoever waits for the run, then `on_success`/`on_failure`, a
retry after backoff, the `after` chains, the next run in the job's queue, files that
waited. A run that never started (skipped, refused, cancelled while it waited, failed
before its process existed) ends here too and is recorded like one that ran.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Protocol

from watchkeeper.core.chains import Chains
from watchkeeper.core.config import JobConfig
from watchkeeper.core.environment import Masker
from watchkeeper.core.history import RunRecord
from watchkeeper.core.hooks import Hooks
from watchkeeper.core.host import Host
from watchkeeper.core.runner import RunOutcome
from watchkeeper.core.runprep import run_record
from watchkeeper.core.runtime import ActiveRun, JobRuntime, OpenLogs, StartRequest
from watchkeeper.core.seams import utc
from watchkeeper.core.units import format_duration

RunWatch = asyncio.Future[dict[str, Any]]


def backoff(job: JobConfig, attempt: int) -> float:
    """Exponential backoff with full jitter: spreads retries of many failing jobs."""
    return random.uniform(0, min(job.max_retry_delay, job.retry_delay * 2 ** (attempt - 1)))


def publish_run(host: Host, kind: str, record: RunRecord, **extra: Any) -> None:
    # Two of these a run: a busy headless keeper skips the stamps and dicts nobody reads.
    if host.bus.subscribers:
        host.bus.publish(kind, **record.to_json(), **extra)


class Pipeline(Protocol):
    """What the end of a run shares with its start (core/runs.py): the runs in flight,
    the timers, the open job logs, the hooks and the idle flag; and the way back in,
    for the run that follows."""

    @property
    def active(self) -> dict[str, ActiveRun]: ...
    @property
    def timers(self) -> dict[str, asyncio.TimerHandle]: ...
    @property
    def logs(self) -> OpenLogs: ...
    @property
    def hooks(self) -> Hooks: ...
    @property
    def idle(self) -> asyncio.Event: ...
    @property
    def loop(self) -> asyncio.AbstractEventLoop | None: ...

    def request(self, request: StartRequest) -> str: ...
    def files_ready(self, job: str) -> None: ...
    def release_waiting(self) -> None: ...


class RunEnd:
    def __init__(self, host: Host, chains: Chains, pipeline: Pipeline) -> None:
        self.host = host
        self.chains = chains
        self.pipeline = pipeline
        self.watchers: dict[str, list[RunWatch]] = {}
        self.on_never_started: list[Callable[[StartRequest, str, str], None]] = []

    def forget(self, active: ActiveRun) -> None:
        """No longer in flight: overlap and max_parallel stop counting it."""
        self.pipeline.active.pop(active.record.id, None)
        active.runtime.active.pop(active.record.id, None)

    # ---- final records ---------------------------------------------------------------

    def failed_unstarted(
        self,
        runtime: JobRuntime,
        request: StartRequest,
        record: RunRecord,
        error: str,
        exit_code: int,
    ) -> None:
        host = self.host
        record.status, record.error, record.exit_code = "failure", error, exit_code
        record.completed_at = utc(host.clock)
        record.duration_ms = 0
        host.history.append(record)
        host.log.error(f"run {record.id} of {record.job}: {error}")
        self._close(runtime, request, record, None)
        self.pipeline.release_waiting()

    def never_started(self, request: StartRequest, status: str, reason: str) -> None:
        """A run that never started (refused by the quota, skipped by overlap, cancelled
        while it waited): recorded, logged and counted like one that ran. A slot's run
        carries the slot's time, so a restart sees that slot taken care of."""
        host = self.host
        for observe in self.on_never_started:
            observe(request, status, reason)
        now = utc(host.clock)
        started_at = now
        if request.due_wall is not None:
            started_at = datetime.fromtimestamp(request.due_wall, UTC)
        record = run_record(request, started_at, host.config, host.vault, host.host)
        record.status, record.completed_at, record.duration_ms, record.error = (
            status,
            max(now, started_at),
            0,
            reason,
        )
        host.outputs.recent.append(record)
        host.history.append(record)
        level = host.log.warning if status == "skipped" else host.log.info
        level(f"run {record.id} of {record.job} ({request.trigger}) {status}: {reason}")
        runtime = host.jobs.get(request.job)  # None once a reload dropped the job
        if runtime is not None and request.trigger == "file":
            runtime.file_request = False
        self._account(runtime, record, ran=False)

    def ended(self, active: ActiveRun, outcome: RunOutcome) -> None:
        host = self.host
        record = active.record
        record.status = outcome.status
        record.exit_code = outcome.exit_code
        record.error = outcome.error
        record.duration_ms = outcome.duration_ms
        record.completed_at = utc(host.clock)
        host.history.append(record)
        active.sink.close(
            lambda: (
                f"■ {outcome.status}"
                + (f": {outcome.error}" if outcome.error else "")
                + f" after {format_duration(outcome.duration_ms / 1000)}"
            ),
            quiet_ok=outcome.status == "success",
        )
        self.forget(active)
        runtime = active.runtime
        self.pipeline.logs.keep_open(active.sink.log, self.pipeline.active.values())
        level = host.log.info if outcome.status == "success" else host.log.warning
        level(
            f"run {record.id} of {record.job} {outcome.status}"
            + (f" ({outcome.error})" if outcome.error else "")
            + f" in {format_duration(outcome.duration_ms / 1000)}"
        )
        assert active.run is not None  # it ended, so it had started
        self._close(runtime, active.request, record, (active.run.spec.env, active.sink.masker))
        self.pipeline.release_waiting()

    # ---- what follows ----------------------------------------------------------------

    def _close(
        self,
        runtime: JobRuntime,
        request: StartRequest,
        record: RunRecord,
        ran_with: tuple[dict[str, str], Masker] | None,
    ) -> None:
        """Everything that follows a run's final record. `ran_with` is the environment
        and masker of a run that started (its hooks get the same)."""
        host, pipeline = self.host, self.pipeline
        job = runtime.config
        failed = record.status in ("failure", "timeout")
        current = host.jobs.get(job.name) is runtime
        retrying = failed and request.attempt <= job.retries and not host.stopping and current
        self._account(runtime, record, ran=True, retrying=retrying)
        if request.files:
            back_in_line = host.handover.settle_run(
                job.name, record.id, request.files, record.status, record.error, retrying
            )
            if back_in_line and failed and not retrying:
                runtime.files_not_before = host.clock.monotonic() + backoff(job, request.attempt)
        if ran_with is not None:
            # on_failure once the last attempt failed, not for each attempt retried.
            hook = job.on_success if record.status == "success" else None
            if failed and not retrying:
                hook = job.on_failure
            if hook is not None and pipeline.hooks.start(runtime, record, hook, *ran_with):
                pipeline.idle.clear()
        if host.stopping or not current:
            return
        if retrying:
            self._retry_later(job, request, record)
        if record.status == "success" and job.name in self.chains.dependents:
            self._advance_chains(job.name, request.wave or record.id)
        if runtime.queued and not host.state.is_paused(job.name):
            pipeline.request(runtime.queued.popleft())
        if host.handover.has_pending(job.name):
            pipeline.files_ready(job.name)

    def _advance_chains(self, succeeded: str, wave: str) -> None:
        host = self.host
        for name in self.chains.advance(succeeded, wave, host.jobs):
            dependent = host.jobs[name]
            if not dependent.config.enabled:
                continue
            if host.state.is_paused(name):
                dependent.missed_while_paused += 1
                continue
            self.pipeline.request(StartRequest(name, "after", wave=wave))

    def _retry_later(self, job: JobConfig, request: StartRequest, record: RunRecord) -> None:
        delay = backoff(job, request.attempt)
        retry = StartRequest(
            job.name,
            "retry",
            request.attempt + 1,
            list(request.files),
            wave=request.wave,
            params=request.params,
        )
        self.host.log.info(
            f"{job.name}: attempt {request.attempt} {record.status}; "
            f"retry {retry.attempt} of {job.retries + 1} in {format_duration(delay)}"
        )
        loop = self.pipeline.loop
        assert loop is not None
        self.pipeline.timers[retry.run_id] = loop.call_later(delay, self._retry, retry)

    def _retry(self, request: StartRequest) -> None:
        self.pipeline.timers.pop(request.run_id, None)
        if request.job in self.host.jobs:
            self.pipeline.request(request)

    def _account(
        self, runtime: JobRuntime | None, record: RunRecord, ran: bool, retrying: bool = False
    ) -> None:
        """What every final record goes through: the job's last result, today's counts,
        metrics, Dashboard.md, the event and whoever waits for the run. `retrying`: a
        failed attempt that will be retried (not notified as a failure)."""
        host = self.host
        if runtime is not None:
            runtime.last = record
        host.count_today(record.status)
        host.outputs.ended(record, ran)
        publish_run(host, "run_finished", record)
        host.notifier.ended(record, retrying)
        for finished in self.watchers.pop(record.id, ()):
            if not finished.done():
                finished.set_result(record.to_json())

    def close(self) -> None:
        for watchers in self.watchers.values():
            for finished in watchers:
                finished.cancel()
        self.watchers.clear()
