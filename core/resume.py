"""What a resume would start at once: the resume preview of the console and the CLI.

A paused job piles up three kinds of work: slots that passed (the catch-up rule turns
them into one run), runs that were queued behind a run in flight, and files waiting in
its folder. Resuming releases them under the usual overlap and quota rules; this module
works out, without touching anything, which of them would start, queue, be skipped or
be refused, so the operator can resume with or without the missed runs.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Protocol

from watchkeeper.core.state import RuntimeState
from watchkeeper.core.units import format_duration

if TYPE_CHECKING:  # the quick CLI reads plans without the keeper's modules
    from collections.abc import Mapping

    from watchkeeper.core.config import Config
    from watchkeeper.core.handover import Handover
    from watchkeeper.core.quota import Quota
    from watchkeeper.core.runtime import JobRuntime
    from watchkeeper.core.seams import Clock


class Resumable(Protocol):
    """What a plan reads of the keeper: it changes nothing."""

    @property
    def state(self) -> RuntimeState: ...
    @property
    def jobs(self) -> Mapping[str, JobRuntime]: ...
    @property
    def config(self) -> Config: ...
    @property
    def handover(self) -> Handover: ...
    @property
    def quota(self) -> Quota: ...
    @property
    def clock(self) -> Clock: ...


@dataclass(frozen=True)
class PlannedRun:
    job: str
    kind: str  # "missed", "queued" or "files"
    detail: str  # what piled up, in words
    outcome: str  # "starts", "queues", "left out", "skipped: ..." or "refused: ..."
    optional: bool  # missed runs may be left out: resume without them

    @property
    def fires(self) -> bool:
        return self.outcome == "starts"


@dataclass(frozen=True)
class ResumePlan:
    target: str | None  # the job, or None for the global pause
    waking: list[str]  # jobs that become active again
    runs: list[PlannedRun]
    still_paused: list[str]  # paused by name and staying so
    everything_paused: bool  # the global pause stays on (resuming one job under it)

    def to_json(self) -> dict[str, Any]:
        runs = [{**asdict(run), "fires": run.fires} for run in self.runs]
        return {**asdict(self), "runs": runs}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ResumePlan:
        fields = ("job", "kind", "detail", "outcome", "optional")
        runs = [PlannedRun(**{key: run[key] for key in fields}) for run in data["runs"]]
        return cls(
            data["target"], data["waking"], runs, data["still_paused"], data["everything_paused"]
        )


def state_after_resume(state: RuntimeState, job: str | None) -> RuntimeState:
    """Resuming a job lifts its own pause; resuming everything lifts the global one only."""
    if job is None:
        return RuntimeState(False, set(state.paused_jobs), state.theme)
    return RuntimeState(state.paused, state.paused_jobs - {job}, state.theme)


def waking_jobs(state: RuntimeState, jobs: list[str], job: str | None) -> list[str]:
    after = state_after_resume(state, job)
    return [name for name in jobs if state.is_paused(name) and not after.is_paused(name)]


def plan_resume(keeper: Resumable, job: str | None, missed: bool = True) -> ResumePlan:
    """`missed=False`: the resume leaves the catch-up runs of missed slots out."""
    after = state_after_resume(keeper.state, job)
    waking = waking_jobs(keeper.state, list(keeper.jobs), job)
    now = keeper.clock.time()
    room = _QuotaRoom(keeper, now)
    runs: list[PlannedRun] = []
    for name in waking:
        runs.extend(_job_plan(keeper, keeper.jobs[name], room, missed))
    return ResumePlan(job, waking, runs, sorted(after.paused_jobs), after.paused)


def _job_plan(
    keeper: Resumable, runtime: JobRuntime, room: _QuotaRoom, with_missed: bool
) -> list[PlannedRun]:
    job = runtime.config
    piled: list[tuple[str, str, bool, str]] = []  # kind, detail, optional, trigger
    for request in runtime.queued:
        piled.append(("queued", f"run {request.run_id} ({request.trigger}) queued", False, ""))
    missed = runtime.missed_while_paused
    if missed and job.enabled:
        slots = f"{missed} slot(s) missed while paused"
        if not with_missed:
            piled.append(("missed", f"{slots}: no catch-up run", True, "left out"))
        elif keeper.config.keeper.catch_up == "once":
            piled.append(("missed", f"{slots}: one catch-up run", True, "catch_up"))
        else:
            piled.append(("missed", f"{slots}: none run (catch_up = none)", True, "none"))
    files = keeper.handover.jobs.get(job.name)
    pending = len(files.pending) if files else 0
    if pending and job.enabled:
        piled.append(("files", f"{pending} file(s) waiting", False, "file"))

    # Mirrors Keeper.submit: one run in flight per job unless overlap = allow, and one
    # queued behind it when overlap = queue.
    busy = next(iter(runtime.active), None)
    queued = runtime.queued[0].run_id if runtime.queued else None
    plan = []
    for kind, detail, optional, trigger in piled:
        if trigger == "none":
            outcome = "skipped: catch_up = none"
        elif trigger == "left out":
            outcome = "left out"
        elif busy is not None and job.overlap != "allow":
            if kind == "files":
                outcome = f"waits: run {busy} takes the files when it ends"
            elif kind == "queued":
                outcome = f"waits for run {busy}"
            elif job.overlap == "skip":
                outcome = f"skipped: run {busy} in flight (overlap = skip)"
            elif queued is not None:
                outcome = f"skipped: run {queued} already queued (overlap = queue)"
            else:
                outcome, queued = "queues", "(the catch-up run)"
        else:
            outcome = room.take(job.name)
            if outcome == "starts":
                busy = f"({kind} run)"
                if kind == "queued":
                    queued = None
        plan.append(PlannedRun(job.name, kind, detail, outcome, optional))
    return plan


class _QuotaRoom:
    """Free quota slots per scope, used up as the plan starts runs. A scope the plan
    fills frees its first slot an hour after the plan's first start in it, if nothing
    counted before frees one sooner."""

    def __init__(self, keeper: Resumable, now: float) -> None:
        self.now = now
        self.free: dict[str, int] = {}
        self.next_free: dict[str, float | None] = {}
        for usage in keeper.quota.usage(now):
            if usage.limit:
                self.free[usage.scope] = usage.limit - usage.used
                self.next_free[usage.scope] = usage.next_free
        for name, limit in keeper.quota.job_limits.items():
            self.free.setdefault(name, limit)
            self.next_free.setdefault(name, None)

    def take(self, job: str) -> str:
        # Here, not at the top: the CLI reads plans (describe) without the quota's modules.
        from watchkeeper.core.quota import GLOBAL, WINDOW

        for scope in (job, GLOBAL):
            if scope in self.free and self.free[scope] <= 0:
                what = "max_runs_per_hour" if scope == GLOBAL else f"{job} max_per_hour"
                refused = f"refused: quota {what} reached"
                when = self.next_free.get(scope)
                if when is None:
                    return refused
                return f"{refused}; a slot frees in {format_duration(max(0.0, when - self.now))}"
        for scope in (job, GLOBAL):
            if scope in self.free:
                self.free[scope] -= 1
                if self.next_free.get(scope) is None:
                    self.next_free[scope] = self.now + WINDOW
        return "starts"


def describe(plan: ResumePlan) -> list[str]:
    """The plan in plain lines, for the CLI and the console's dialog."""
    what = plan.target or "everything"
    if not plan.waking:
        lines = [f"resuming {what} makes no job active again"]
    else:
        lines = [f"resuming {what} makes {len(plan.waking)} job(s) active again"]
    if plan.runs:
        width = max(len(run.job) for run in plan.runs)
        lines.append("runs it releases:")
        for run in plan.runs:
            optional = "  [missed: optional]" if run.optional else ""
            lines.append(f"  {run.job:<{width}}  {run.detail} -> {run.outcome}{optional}")
    elif plan.waking:
        lines.append("no missed, queued or waiting runs: nothing starts at once")
    if plan.everything_paused:
        lines.append("everything stays paused")
    elif plan.still_paused:
        lines.append(f"still paused by name: {', '.join(plan.still_paused)}")
    return lines
