"""Run quotas: a global cap and per-job caps on run starts over a sliding 60-minute window.

Every run that started counts, whatever its trigger or outcome; manual runs count but are
never refused. Times are wall-clock seconds (time.time()) passed in by the caller. A start
leaves the window when `start + WINDOW <= now`; a start in the "future" (the clock stepped
back) stays counted until the clock catches up with it and its hour has passed.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import pairwise
from pathlib import Path
from typing import Any

from core.history import RunRecord, runs_since
from core.units import format_duration

WINDOW = 3600.0
GLOBAL = "global"  # the scope name of the global quota
_BUCKETS = 60
_BUCKET_SECONDS = WINDOW / _BUCKETS


@dataclass(frozen=True)
class Refusal:
    scope: str  # GLOBAL or the job name
    limit: int
    next_free: float  # wall time when a slot frees in the scope that refused

    def message(self, now: float) -> str:
        # A clock stepped back can put next_free further off than an hour, never behind us.
        wait = format_duration(max(0.0, self.next_free - now))
        if self.scope == GLOBAL:
            what = f"max_runs_per_hour {self.limit}"
        else:
            what = f"job {self.scope} max_per_hour {self.limit}"
        return f"quota: {what} reached; next slot frees in {wait}"


@dataclass
class ScopeUsage:
    scope: str
    used: int
    limit: int  # 0 = unlimited
    next_free: float | None  # when the oldest counted start leaves the window; None if none


def started(record: RunRecord) -> bool:
    """Whether a record is of a run that really started (and so counts against quotas).
    Refused runs are `skipped`; a run cancelled while it waited for a slot has no exit
    code. Runs still `running`, or `interrupted`, did start."""
    if record.status == "skipped":
        return False
    return not (record.status == "cancelled" and record.exit_code is None)


def _expire(starts: deque[float], now: float) -> None:
    # Compared as start + WINDOW, the very sum next_free reports, so a slot is free at
    # exactly next_free whatever the float rounding of `now - WINDOW` would have been.
    while starts and starts[0] + WINDOW <= now:
        starts.popleft()


def _add(starts: deque[float], at: float) -> None:
    if not starts or at >= starts[-1]:
        starts.append(at)
    else:
        # The clock stepped back: keep the deque sorted, so expiry stays a pop from the left
        # and this start leaves the window an hour after its own time, not a later one's.
        starts.insert(bisect_right(starts, at), at)


def _next_free(starts: deque[float]) -> float | None:
    return starts[0] + WINDOW if starts else None


class Quota:
    """Start times per scope in sorted deques, expired lazily on every call.

    check and record are O(1) amortised: each start is appended once and popped once.
    Memory is bounded by the starts within the window.
    """

    def __init__(self, global_limit: int, job_limits: dict[str, int]) -> None:
        self._global: deque[float] = deque()
        self._jobs: dict[str, deque[float]] = {}
        self.global_limit = 0
        self.job_limits: dict[str, int] = {}
        self.set_limits(global_limit, job_limits)

    def set_limits(self, global_limit: int, job_limits: dict[str, int]) -> None:
        """New limits (a config reload); the recorded starts stay."""
        self.global_limit = max(global_limit, 0)
        self.job_limits = {job: limit for job, limit in job_limits.items() if limit > 0}

    def rebuild(self, starts: Iterable[tuple[str, float]], now: float) -> None:
        """Replace the window with these (job, started_at) starts; older ones are dropped."""
        kept = sorted((at, job) for job, at in starts if at + WINDOW > now)
        self._global = deque(at for at, _ in kept)
        self._jobs = {}
        for at, job in kept:
            self._jobs.setdefault(job, deque()).append(at)

    @classmethod
    def from_history(
        cls, directory: Path, global_limit: int, job_limits: dict[str, int], now: float
    ) -> Quota:
        """The window as the history in `directory` left it, so a restart does not reset it."""
        result = runs_since(directory, datetime.fromtimestamp(now - WINDOW, UTC))
        quota = cls(global_limit, job_limits)
        quota.rebuild(
            (
                (record.job, record.started_at.timestamp())
                for record in result.records
                if started(record)
            ),
            now,
        )
        return quota

    def check(self, job: str, now: float, manual: bool = False) -> Refusal | None:
        """None to admit a run of `job` now; else the refusal of the scope that frees last."""
        if manual:
            return None
        refusals = []
        job_limit = self.job_limits.get(job, 0)
        if job_limit:
            starts = self._job_starts(job, now)
            if starts is not None:
                refusals.append(self._refusal(job, starts, job_limit))
        if self.global_limit:
            _expire(self._global, now)
            refusals.append(self._refusal(GLOBAL, self._global, self.global_limit))
        found = [refusal for refusal in refusals if refusal is not None]
        # The run cannot start before both scopes have room, so name the one that frees last.
        return max(found, key=lambda refusal: refusal.next_free) if found else None

    def record(self, job: str, now: float) -> None:
        """A run of `job` started at `now`."""
        _expire(self._global, now)
        _add(self._global, now)
        starts = self._jobs.get(job)
        if starts is None:
            starts = self._jobs[job] = deque()
        else:
            _expire(starts, now)
        _add(starts, now)

    def usage(self, now: float) -> list[ScopeUsage]:
        """Global first, then (by name) every job with a limit or with starts in the window."""
        _expire(self._global, now)
        result = [
            ScopeUsage(GLOBAL, len(self._global), self.global_limit, _next_free(self._global))
        ]
        for job in sorted(self._jobs.keys() | self.job_limits.keys()):
            starts = self._job_starts(job, now)
            limit = self.job_limits.get(job, 0)
            if starts is not None or limit:
                used = len(starts) if starts is not None else 0
                next_free = _next_free(starts) if starts is not None else None
                result.append(ScopeUsage(job, used, limit, next_free))
        return result

    def runs_last_hour(self, now: float) -> int:
        _expire(self._global, now)
        return len(self._global)

    def runs_per_minute(self, now: float) -> list[int]:
        """Starts per minute over the last hour, oldest minute first; future starts go last."""
        _expire(self._global, now)
        starts = list(self._global)  # one copy in C, then bisect: cheap at millions of starts
        oldest = now - WINDOW
        edges = [0]
        edges += [bisect_left(starts, oldest + i * _BUCKET_SECONDS) for i in range(1, _BUCKETS)]
        edges.append(len(starts))
        return [high - low for low, high in pairwise(edges)]

    def _job_starts(self, job: str, now: float) -> deque[float] | None:
        """The job's starts within the window, or None (and forgotten) when it has none."""
        starts = self._jobs.get(job)
        if starts is None:
            return None
        _expire(starts, now)
        if not starts:
            del self._jobs[job]  # memory stays bounded by jobs that ran within the hour
            return None
        return starts

    @staticmethod
    def _refusal(scope: str, starts: deque[float], limit: int) -> Refusal | None:
        used = len(starts)
        if used < limit:
            return None
        # A lowered limit or manual runs can leave `used` above `limit`: a slot frees only
        # once used - limit + 1 of the oldest starts have left the window.
        return Refusal(scope, limit, starts[used - limit] + WINDOW)


def usage_view(usages: list[ScopeUsage]) -> list[dict[str, Any]]:
    """The JSON shape of quota usage in --status, snapshots and events."""
    return [
        {
            "scope": usage.scope,
            "used": usage.used,
            "limit": usage.limit,
            "next_free": (
                datetime.fromtimestamp(usage.next_free, UTC).isoformat(timespec="seconds")
                if usage.next_free is not None
                else None
            ),
        }
        for usage in usages
    ]
