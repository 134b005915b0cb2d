"""What the console knows about the keeper: events and snapshots folded into plain data.

Applying an event is cheap and only marks what changed (`dirty` panes, `dirty_jobs`);
the app redraws dirty panes on a timer, so a burst of events costs one redraw.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections import Counter, deque
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from operator import itemgetter
from pathlib import Path
from typing import Any

from watchkeeper.core.names import shown
from watchkeeper.core.quota import GLOBAL
from watchkeeper.tui.text import parse_time

LOG_BACKLOG = 1000
"""Live log lines kept between two redraws; more than a screen can show anyway."""
WINDOW = 3600.0
COUNTED_OK = ("success",)
COUNTED_FAILED = ("failure", "timeout", "interrupted")


def _finished_at(record: dict[str, Any] | None) -> float:
    when = parse_time((record or {}).get("completedAt") or (record or {}).get("startedAt"))
    return when.timestamp() if when is not None else float("-inf")


@dataclass
class JobRow:
    name: str
    trigger: str = "manual"
    enabled: bool = True
    paused: bool = False
    """Paused by itself or by the global pause."""
    next_run: datetime | None = None
    last: dict[str, Any] | None = None
    running: dict[str, datetime] = field(default_factory=dict)
    """Run id -> when it started."""
    queued: int = 0
    files_pending: int = 0
    breaker: str | None = None
    """An http job's circuit breaker: closed, open or half-open; None without one."""

    def update(self, view: dict[str, Any], now: datetime, ended: set[str] | None = None) -> bool:
        """Take a job_view from the keeper; whether anything shown changed. Runs in
        `ended` finished after the view was taken: they stay finished."""
        running = {
            run["id"]: self.running.get(run["id"])
            or now - timedelta(seconds=run.get("elapsed_s") or 0)
            for run in view.get("running", [])
            if not ended or run["id"] not in ended
        }
        before = self._shown()
        self.trigger = view.get("trigger", self.trigger)
        self.enabled = bool(view.get("enabled", True))
        self.paused = bool(view.get("paused"))
        self.next_run = parse_time(view.get("next_run"))
        if _finished_at(view.get("last")) >= _finished_at(self.last):
            self.last = view.get("last")  # else a run that ended after the view was taken
        self.running = running
        self.queued = int(view.get("queued") or 0)
        self.files_pending = int(view.get("files_pending") or 0)
        self.breaker = (view.get("breaker") or {}).get("state")
        return self._shown() != before

    def _shown(self) -> tuple:
        return (
            self.trigger,
            self.enabled,
            self.paused,
            self.next_run,
            (self.last or {}).get("id"),
            (self.last or {}).get("status"),
            tuple(self.running),
            self.queued,
            self.files_pending,
            self.breaker,
        )


@dataclass
class Model:
    vault: Path
    state: str = "STARTING"
    pid: int | None = None
    attached_pid: int | None = None
    """The keeper's pid when the console is attached to one running elsewhere."""
    started_at: datetime | None = None
    today: dict[str, int] = field(default_factory=lambda: {"ok": 0, "failed": 0})
    global_paused: bool = False
    own_paused: set[str] = field(default_factory=set)
    jobs: dict[str, JobRow] = field(default_factory=dict)
    folders: dict[str, tuple[int, tuple[str, ...]]] = field(default_factory=dict)
    duplicates: frozenset[str] = frozenset()  # vault-relative: held by unique_by, marked
    quota: list[dict[str, Any]] = field(default_factory=list)
    runs_last_hour: int = 0
    starts: deque[list[int]] = field(default_factory=deque)
    """Run starts over the last hour (for the per-minute sparkline) as sorted [second,
    count] buckets: at most 3,600 however busy the keeper is, where a float per start
    came to 180,000 of them (~6 MB) an hour at 50 runs a second."""
    config_issues: list[str] = field(default_factory=list)
    cluster: dict[str, Any] | None = None
    """Cluster mode: the snapshot's `role` (LEADER, or STANDBY through a standby) and
    `epoch`; None without a cluster."""
    ended: set[str] = field(default_factory=set)
    """Runs whose final record arrived: a snapshot taken just before must not bring them
    back to life. Cleared at each snapshot, which is taken after them."""
    events: int = 0
    counted: int = 0
    """Events that change today's results or quota usage: a snapshot asked for before
    one of them is older than what the events told, and leaves those numbers alone."""
    dirty: set[str] = field(default_factory=set)
    dirty_jobs: set[str] = field(default_factory=set)
    jobs_reshaped: bool = False
    """Jobs were added or removed: the table needs its rows laid out again."""
    history_updates: dict[str, dict[str, Any]] = field(default_factory=dict)
    log_lines: deque[tuple[str, str]] = field(default_factory=lambda: deque(maxlen=LOG_BACKLOG))

    # ---- reading ------------------------------------------------------------------

    @property
    def running_count(self) -> int:
        return sum(len(job.running) for job in self.jobs.values())

    def running_runs(self) -> list[tuple[str, str]]:
        """(run id, job) of every run in flight."""
        return [(run_id, job.name) for job in self.jobs.values() for run_id in job.running]

    def is_own_paused(self, job: str) -> bool:
        return job in self.own_paused

    def runs_per_minute(self, now: float) -> list[int]:
        """Starts per minute over the last hour, oldest minute first (a start "in the
        future", after a clock step, counts in the last minute)."""
        self._expire(now)
        counts = [0] * 60
        oldest = now - WINDOW
        for second, count in self.starts:
            # A second that straddles the window's start counts in its first minute.
            counts[min(max(int((second - oldest) // 60), 0), 59)] += count
        return counts

    # ---- applying -----------------------------------------------------------------

    def take(self) -> set[str]:
        """The dirty panes, and forget them: the caller redraws them now."""
        dirty, self.dirty = self.dirty, set()
        return dirty

    def apply(self, kind: str, data: dict[str, Any], now: datetime) -> None:
        self.events += 1
        handler = getattr(self, f"_on_{kind}", None)
        if handler is not None:
            handler(data, now)

    def _job(self, name: str) -> JobRow:
        job = self.jobs.get(name)
        if job is None:
            job = self.jobs[name] = JobRow(name)
            self.jobs_reshaped = True
        return job

    def _touch_job(self, name: str) -> None:
        self.dirty_jobs.add(name)
        self.dirty.add("jobs")

    def _on_run_started(self, data: dict[str, Any], now: datetime) -> None:
        started = parse_time(data.get("startedAt")) or now
        job = self._job(data["taskId"])
        job.running[data["id"]] = started
        self._touch_job(job.name)
        self.history_updates[data["id"]] = data
        self._count_start(math.floor(started.timestamp()))
        self._count_quota(job.name)
        self.dirty.update(("history", "quota"))

    def _count_quota(self, job: str) -> None:
        """A run counts against the quota as it starts: count it now, not when the
        keeper next reports usage (seconds later, a run behind the header)."""
        self.counted += 1
        self.runs_last_hour += 1
        scopes = {usage["scope"]: usage for usage in self.quota}
        for scope in (GLOBAL, job):
            usage = scopes.get(scope)
            if usage is None:
                usage = {"scope": scope, "used": 0, "limit": 0, "next_free": None}
                self.quota.append(usage)
            usage["used"] = int(usage.get("used") or 0) + 1

    def _count_start(self, second: int) -> None:
        starts = self.starts
        if starts and starts[-1][0] == second:
            starts[-1][1] += 1
        elif not starts or second > starts[-1][0]:
            starts.append([second, 1])
        else:  # rare: runs reported a hair out of order
            index = bisect_left(starts, second, key=itemgetter(0))
            if starts[index][0] == second:
                starts[index][1] += 1
            else:
                starts.insert(index, [second, 1])

    def _on_run_finished(self, data: dict[str, Any], now: datetime) -> None:
        job = self._job(data["taskId"])
        job.running.pop(data["id"], None)
        self.ended.add(data["id"])
        job.last = data
        self._touch_job(job.name)
        self.history_updates[data["id"]] = data
        self.counted += 1
        status = data.get("status")
        if status in COUNTED_OK:
            self.today["ok"] += 1
        elif status in COUNTED_FAILED:
            self.today["failed"] += 1
        self.dirty.update(("history", "header"))

    def _on_job_state(self, data: dict[str, Any], now: datetime) -> None:
        name = data["name"]
        job = self._job(name)
        if not self.global_paused:
            # Without the global pause, "paused" is the job's own.
            (self.own_paused.add if data.get("paused") else self.own_paused.discard)(name)
        if job.update(data, now):
            self._touch_job(name)

    def _on_keeper_state(self, data: dict[str, Any], now: datetime) -> None:
        state = data.get("state", self.state)
        if state in ("RUNNING", "PAUSED"):
            self.global_paused = state == "PAUSED"
        if state == "STOPPED":
            for job in self.jobs.values():
                if job.running:
                    job.running.clear()
                    self._touch_job(job.name)
        self.state = state
        self.dirty.add("header")

    def _on_vault_changed(self, data: dict[str, Any], now: datetime) -> None:
        self.set_folders(data.get("folders", {}))

    def _on_item_decided(self, data: dict[str, Any], now: datetime) -> None:
        path = shown(str(data.get("path", "")))
        held = path in self.duplicates
        if data.get("outcome") == "duplicate" and not held:
            self.set_duplicates(self.duplicates | {path})
        elif data.get("outcome") != "duplicate" and held:
            self.set_duplicates(self.duplicates - {path})

    def set_duplicates(self, paths: frozenset[str]) -> None:
        if paths != self.duplicates:
            self.duplicates = paths
            self.dirty.add("vault")

    def _on_log_line(self, data: dict[str, Any], now: datetime) -> None:
        source = data.get("source", "keeper")
        if source == "keeper":
            stamp = data.get("time") or now.isoformat(timespec="milliseconds")
            line = f"{stamp} {data.get('level', 'INFO'):<5} {data.get('line', '')}"
        else:
            line = f"{now.isoformat(timespec='milliseconds')} {data.get('line', '')}"
        self.log_lines.append((source, line))
        self.dirty.add("log")

    def _on_quota(self, data: dict[str, Any], now: datetime) -> None:
        self.counted += 1
        self.quota = [dict(usage) for usage in data.get("usage", [])]
        self.runs_last_hour = int(data.get("runs_last_hour") or 0)
        self.dirty.add("quota")

    def _on_config_error(self, data: dict[str, Any], now: datetime) -> None:
        self.config_issues = [str(issue) for issue in data.get("issues", [])]
        self.dirty.add("header")

    def _on_config_reloaded(self, data: dict[str, Any], now: datetime) -> None:
        self.config_issues = []
        self.dirty.add("header")

    # ---- whole views ----------------------------------------------------------------

    def load_snapshot(
        self,
        snapshot: dict[str, Any],
        now: datetime,
        ended: set[str] | None = None,
        counted: int | None = None,
    ) -> None:
        """`ended`: runs known to have finished when the snapshot was asked for; the
        snapshot already knows them, later ones it may not. `counted`: the model's count
        of such events then; if more came since, today's results and quota usage stay."""
        self.state = snapshot.get("state", self.state)
        self.global_paused = bool(snapshot.get("paused"))
        self.pid = snapshot.get("pid")
        role = snapshot.get("role")
        self.cluster = {"role": role, "epoch": snapshot.get("epoch")} if role else None
        self.started_at = parse_time(snapshot.get("started_at"))
        if counted is None or counted == self.counted:
            self.today = dict(snapshot.get("today") or self.today)
            self.quota = [dict(usage) for usage in snapshot.get("quota", [])]
            self.runs_last_hour = int(snapshot.get("runs_last_hour") or 0)
        names = [view["name"] for view in snapshot.get("jobs", [])]
        if names != list(self.jobs):
            self.jobs = {name: self.jobs.get(name) or JobRow(name) for name in names}
            self.jobs_reshaped = True
        for view in snapshot.get("jobs", []):
            job = self.jobs[view["name"]]
            if job.update(view, now, self.ended):
                self._touch_job(job.name)
            if not self.global_paused:
                (self.own_paused.add if job.paused else self.own_paused.discard)(job.name)
        if ended is not None:
            self.ended -= ended
        self.dirty.update(("header", "quota"))
        if self.jobs_reshaped:
            self.dirty.add("jobs")

    def set_folders(self, folders: dict[str, Any]) -> None:
        shown = {
            name: (int(info.get("count", 0)), tuple(info.get("newest", ())))
            for name, info in folders.items()
        }
        if shown != self.folders:
            self.folders = shown
            self.dirty.add("vault")

    def set_starts(self, starts: list[float], now: float) -> None:
        """Starts read from history of runs from before the console; later ones come
        from run_started events."""
        counts = Counter(math.floor(moment) for moment in starts)
        for second, count in self.starts:
            counts[second] += count
        self.starts = deque([second, count] for second, count in sorted(counts.items()))
        self._expire(now)
        self.dirty.add("quota")

    def _expire(self, now: float) -> None:
        while self.starts and self.starts[0][0] + 1 <= now - WINDOW:
            self.starts.popleft()
