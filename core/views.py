"""What the keeper shows of itself: a job's view and the snapshot, in the control
protocol's shapes (core/control_protocol.py), which the console, the CLI, Dashboard.md
and metrics.prom all read."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sized
from datetime import date, datetime
from pathlib import Path
from typing import Any, Protocol, cast
from zoneinfo import ZoneInfo

from watchkeeper.core.breaker import Breakers
from watchkeeper.core.config import JobConfig
from watchkeeper.core.control_protocol import (
    JobView,
    QuotaUsage,
    RunJson,
    RunningView,
    Snapshot,
    Today,
)
from watchkeeper.core.handover import Handover
from watchkeeper.core.history import RunRecord, iso
from watchkeeper.core.quota import Quota, ScopeUsage, usage_view
from watchkeeper.core.runtime import JobRuntime
from watchkeeper.core.seams import Clock, LastRuns
from watchkeeper.core.slots import Slots
from watchkeeper.core.state import RuntimeState
from watchkeeper.core.triggers import wall_moment


def job_view(
    runtime: JobRuntime,
    paused: bool,
    next_run: datetime | None,
    files_pending: int,
    now_mono: float,
    seen: Seen | None = None,
) -> JobView:
    """`seen`: what an earlier view of this job made, reused while it holds."""
    job = runtime.config
    seen = seen or Seen()
    running: list[RunningView] = [
        {
            "id": run_id,
            "pid": active.run.pid if active.run else None,
            "trigger": active.request.trigger,
            "elapsed_s": round(now_mono - active.run.started_mono, 3) if active.run else 0.0,
        }
        for run_id, active in runtime.active.items()
    ]
    return {
        "name": job.name,
        "trigger": seen.trigger(job),
        "enabled": job.enabled,
        "paused": paused,
        "next_run": next_run.isoformat(timespec="seconds") if next_run else None,
        "last": seen.last(runtime.last) if runtime.last else None,
        "running": running,
        "queued": len(runtime.queued),
        "files_pending": files_pending,
        "missed_while_paused": runtime.missed_while_paused,
    }


class Seen:
    """One job's trigger summary and last run as its views show them, made again only
    when its config or last run is another: Dashboard.md views every job at each write,
    and the console each job as its run ends."""

    __slots__ = ("_config", "_ended", "_last", "_record", "_trigger")

    def __init__(self) -> None:
        self._config: JobConfig | None = None
        self._trigger = ""
        self._record: RunRecord | None = None
        self._ended: tuple[str, datetime | None] = ("", None)
        self._last: dict[str, Any] = {}

    def trigger(self, config: JobConfig) -> str:
        if config is not self._config:  # frozen: another config is a reload
            self._config, self._trigger = config, config.trigger_summary
        return self._trigger

    def last(self, record: RunRecord) -> RunJson:
        # A job's last record is replaced as its next run ends; one that ends in place
        # (from running) changes its status and end.
        ended = (record.status, record.completed_at)
        if record is not self._record or ended != self._ended:
            self._record, self._ended, self._last = record, ended, record.to_json()
        # A copy: a view goes out to subscribers, which may keep or change it.
        return cast(RunJson, dict(self._last))


def quota_view(usages: list[ScopeUsage]) -> list[QuotaUsage]:
    return cast(list[QuotaUsage], usage_view(usages))


def snapshot(
    keeper: tuple[str, str, str],
    state: str,
    uptime_s: float,
    paused: bool,
    running: int,
    waiting: int,
    today: Today,
    quota: list[QuotaUsage],
    runs_last_hour: int,
) -> Snapshot:
    """`keeper`: its vault, host and start time (ISO). `jobs` is left for the caller."""
    vault, host, started_at = keeper
    return {
        "vault": vault,
        "state": state,
        "pid": os.getpid(),
        "host": host,
        "started_at": started_at,
        "uptime_s": round(uptime_s, 1),
        "paused": paused,
        "running": running,
        "waiting": waiting,
        "today": today,
        "quota": quota,
        "runs_last_hour": runs_last_hour,
        "jobs": [],
    }


class DayCounts:
    """Today's ok/failed counts in the keeper's zone, from zero at its midnight."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.counts: Today = {"ok": 0, "failed": 0}
        self.day: date | None = None

    def start(self, counts: Today, tz: ZoneInfo) -> None:
        self.counts, self.day = counts, datetime.fromtimestamp(self.clock.time(), tz).date()

    def count(self, status: str, tz: ZoneInfo) -> None:
        today = datetime.fromtimestamp(self.clock.time(), tz).date()
        if today != self.day:
            self.day, self.counts = today, {"ok": 0, "failed": 0}
        if status == "success":
            self.counts["ok"] += 1
        elif status in ("failure", "timeout", "interrupted"):
            self.counts["failed"] += 1


class Viewed(Protocol):
    """What the views read of the keeper."""

    @property
    def vault(self) -> Path: ...
    @property
    def host(self) -> str: ...
    @property
    def tz(self) -> ZoneInfo: ...
    @property
    def clock(self) -> Clock: ...
    @property
    def state(self) -> RuntimeState: ...
    @property
    def state_word(self) -> str: ...
    @property
    def slots(self) -> Slots: ...
    @property
    def handover(self) -> Handover: ...
    @property
    def quota(self) -> Quota: ...
    @property
    def active(self) -> Mapping[str, object]: ...
    @property
    def waiting(self) -> Sized: ...
    @property
    def day(self) -> DayCounts: ...
    @property
    def jobs(self) -> Mapping[str, JobRuntime]: ...
    @property
    def started_at(self) -> datetime: ...
    @property
    def started_mono(self) -> float: ...
    @property
    def breakers(self) -> Breakers: ...


class Views:
    def __init__(self, keeper: Viewed) -> None:
        self.keeper = keeper
        self._seen: dict[str, Seen] = {}

    def learn(self, recent: LastRuns) -> None:
        """Each job's last result and today's counts, from the runs before this keeper."""
        keeper = self.keeper
        for name, record in recent.last.items():
            runtime = keeper.jobs.get(name)
            if runtime is not None:
                runtime.last = record
        counts = recent.today
        keeper.day.start({"ok": counts["ok"], "failed": counts["failed"]}, keeper.tz)

    def next_run(self, runtime: JobRuntime) -> datetime | None:
        """When its next slot falls; None while it is paused (the slot would not run)."""
        keeper = self.keeper
        if keeper.state.is_paused(runtime.name):
            return None
        wall = keeper.slots.next_wall(runtime)
        return None if wall is None else wall_moment(wall, keeper.tz)

    def job(self, runtime: JobRuntime) -> JobView:
        keeper = self.keeper
        name = runtime.name
        files = keeper.handover.jobs.get(name)
        seen = self._seen.get(name)
        if seen is None:
            if len(self._seen) >= 2 * len(keeper.jobs):  # jobs a reload took away
                self._seen = {name: self._seen[name] for name in keeper.jobs if name in self._seen}
            seen = self._seen[name] = Seen()
        view = job_view(
            runtime,
            keeper.state.is_paused(name),
            self.next_run(runtime),
            len(files.pending) if files else 0,
            keeper.clock.monotonic(),
            seen,
        )
        if runtime.config.breaker is not None:
            view["breaker"] = keeper.breakers.view(runtime.name)
        return view

    def head(self) -> Snapshot:
        """The snapshot with its job views left out."""
        keeper = self.keeper
        now = keeper.clock.time()
        counts = keeper.day.counts
        return snapshot(
            (str(keeper.vault), keeper.host, iso(keeper.started_at)),
            keeper.state_word,
            keeper.clock.monotonic() - keeper.started_mono,
            keeper.state.paused,
            len(keeper.active),
            len(keeper.waiting),
            Today(ok=counts["ok"], failed=counts["failed"]),
            quota_view(keeper.quota.usage(now)),
            keeper.quota.runs_last_hour(now),
        )

    def snapshot(self) -> Snapshot:
        head = self.head()
        head["jobs"] = [self.job(runtime) for runtime in self.keeper.jobs.values()]
        return head
