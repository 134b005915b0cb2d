"""Run quotas: a global cap and per-job caps on run starts over a sliding 60-minute window.

Every run that started counts, whatever its trigger or outcome; manual runs count but are
never refused. Times are wall-clock seconds (time.time()) passed in by the caller. A start
leaves the window when `start + WINDOW <= now`; a start in the "future" (the clock stepped
back) stays counted until the clock catches up with it and its hour has passed.

Only a scope with a limit keeps every start time: refusing exactly, and saying when a slot
frees, needs them. A scope without one only ever shows a count, so it keeps starts per
clock minute instead: at most 61 buckets however many runs start (1,000 starts a second
for an hour would otherwise hold ~3.6 million floats, twice). The price: such a count
treats every start as made at the end of its minute, so a start stays counted up to a
minute longer than its hour. A limit newly set on a reload reads the buckets the same way,
which only ever counts a start longer, never shorter, so the new limit is never exceeded.
"""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import pairwise, repeat
from operator import itemgetter
from pathlib import Path
from typing import Any

from watchkeeper.core.history import RunRecord, Start, starts_since
from watchkeeper.core.units import format_duration

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
    # When a slot frees: the oldest counted start leaves the window. None if nothing is
    # counted, and in a scope without a limit, where no run waits for a slot.
    next_free: float | None


def started(record: RunRecord | Start) -> bool:
    """Whether a record is of a run that really started (and so counts against quotas).
    Refused runs are `skipped`; a run cancelled while it waited for a slot has no exit
    code. Runs still `running`, or `interrupted`, did start."""
    if record.status == "skipped":
        return False
    return not (record.status == "cancelled" and record.exit_code is None)


class _Exact:
    """Every start in the window, sorted; what a scope with a limit keeps."""

    __slots__ = ("times",)

    def __init__(self, times: Iterable[float] = ()) -> None:
        self.times: deque[float] = deque(times)

    @property
    def used(self) -> int:
        return len(self.times)

    def expire(self, now: float) -> None:
        # Compared as start + WINDOW, the very sum next_free reports, so a slot is free at
        # exactly next_free whatever the float rounding of `now - WINDOW` would have been.
        times = self.times
        while times and times[0] + WINDOW <= now:
            times.popleft()

    def add(self, at: float) -> None:
        times = self.times
        if not times or at >= times[-1]:
            times.append(at)
        else:
            # The clock stepped back: keep the deque sorted, so expiry stays a pop from the
            # left and this start leaves the window an hour after its own time, not a later
            # one's.
            times.insert(bisect_right(times, at), at)

    def next_free(self) -> float | None:
        return self.times[0] + WINDOW if self.times else None

    def refusal(self, scope: str, limit: int) -> Refusal | None:
        used = len(self.times)
        if used < limit:
            return None
        # A lowered limit or manual runs can leave `used` above `limit`: a slot frees only
        # once used - limit + 1 of the oldest starts have left the window.
        return Refusal(scope, limit, self.times[used - limit] + WINDOW)

    def per_minute(self, now: float) -> list[int]:
        starts = list(self.times)  # one copy in C, then bisect: cheap at millions of starts
        oldest = now - WINDOW
        edges = [0]
        edges += [bisect_left(starts, oldest + i * _BUCKET_SECONDS) for i in range(1, _BUCKETS)]
        edges.append(len(starts))
        return [high - low for low, high in pairwise(edges)]


def _minute(at: float) -> int:
    """The clock minute `at` is counted in, named by its end: minute m is (60m - 60, 60m].
    Closed at the end, so a start read back as at its minute's end (see _kept_as) falls in
    the same minute again."""
    return math.ceil(at / _BUCKET_SECONDS)


def _minute_end(minute: int) -> float:
    """When the starts counted in `minute` are taken to have happened: never before any of
    them really did, so a count never lets a start leave early."""
    return minute * _BUCKET_SECONDS


class _Minutes:
    """Starts counted per clock minute, as sorted [minute, count] buckets; what a scope
    without a limit keeps. A bucket leaves the window an hour after its minute ends, so at
    most 61 are live (plus those of "future" minutes after the clock stepped back)."""

    __slots__ = ("buckets", "used")

    def __init__(self) -> None:
        self.buckets: deque[list[int]] = deque()
        self.used = 0

    def expire(self, now: float) -> None:
        buckets = self.buckets
        while buckets and _minute_end(buckets[0][0]) + WINDOW <= now:
            self.used -= buckets.popleft()[1]

    def add(self, at: float) -> None:
        minute = _minute(at)
        buckets = self.buckets
        self.used += 1
        if buckets and buckets[-1][0] == minute:
            buckets[-1][1] += 1
        elif not buckets or minute > buckets[-1][0]:
            buckets.append([minute, 1])
        else:
            # The clock stepped back: keep the buckets sorted, as _Exact keeps its starts.
            index = bisect_left(buckets, minute, key=itemgetter(0))
            if buckets[index][0] == minute:
                buckets[index][1] += 1
            else:
                buckets.insert(index, [minute, 1])

    def per_minute(self, now: float) -> list[int]:
        counts = [0] * _BUCKETS
        current = _minute(now)
        for minute, count in self.buckets:
            # The oldest live bucket straddles the window's start and shares the first slot;
            # "future" buckets (the clock stepped back) go last, as exact starts do.
            counts[min(max(minute - current + _BUCKETS - 1, 0), _BUCKETS - 1)] += count
        return counts


_Scope = _Exact | _Minutes


def _scope(limited: bool) -> _Scope:
    return _Exact() if limited else _Minutes()


def _kept_as(scope: _Scope, limited: bool) -> _Scope:
    """`scope`'s starts in the shape its (new) limit needs."""
    if limited and isinstance(scope, _Minutes):
        # Each start taken at its minute's end: counted at least as long as it really is.
        return _Exact(
            at for minute, count in scope.buckets for at in repeat(_minute_end(minute), count)
        )
    if not limited and isinstance(scope, _Exact):
        counted = _Minutes()
        for at in scope.times:
            counted.add(at)
        return counted
    return scope


class Quota:
    """Starts per scope (exact for scopes with a limit, per minute for the rest), expired
    lazily on every call.

    check and record are O(1) amortised: each start or bucket is appended once and popped
    once. Memory is bounded by the starts within the window of scopes with a limit, and by
    61 buckets for each scope without one.
    """

    def __init__(self, global_limit: int, job_limits: dict[str, int]) -> None:
        self._global: _Scope = _Minutes()
        self._jobs: dict[str, _Scope] = {}
        self.global_limit = 0
        self.job_limits: dict[str, int] = {}
        self.set_limits(global_limit, job_limits)

    def set_limits(self, global_limit: int, job_limits: dict[str, int]) -> None:
        """New limits (a config reload); the recorded starts stay, reshaped where a limit
        came or went."""
        self.global_limit = max(global_limit, 0)
        self.job_limits = {job: limit for job, limit in job_limits.items() if limit > 0}
        self._global = _kept_as(self._global, self.global_limit > 0)
        self._jobs = {
            job: _kept_as(scope, job in self.job_limits) for job, scope in self._jobs.items()
        }

    def rebuild(self, starts: Iterable[tuple[str, float]], now: float) -> None:
        """Replace the window with these (job, started_at) starts; older ones are dropped."""
        self._global = _scope(self.global_limit > 0)
        self._jobs = {}
        for at, job in sorted((at, job) for job, at in starts if at + WINDOW > now):
            self._global.add(at)
            scope = self._jobs.get(job)
            if scope is None:
                scope = self._jobs[job] = _scope(job in self.job_limits)
            scope.add(at)

    @classmethod
    def from_history(
        cls, directory: Path, global_limit: int, job_limits: dict[str, int], now: float
    ) -> Quota:
        """The window as the history in `directory` left it, so a restart does not reset it."""
        since = datetime.fromtimestamp(now - WINDOW, UTC)
        quota = cls(global_limit, job_limits)
        quota.rebuild(
            ((start.job, start.at) for start in starts_since(directory, since) if started(start)),
            now,
        )
        return quota

    def check(self, job: str, now: float, manual: bool = False) -> Refusal | None:
        """None to admit a run of `job` now; else the refusal of the scope that frees last."""
        job_limit = self.job_limits.get(job, 0)
        if manual or not (job_limit or self.global_limit):
            return None
        refusals = []
        if job_limit:
            # isinstance only narrows the type: set_limits keeps limited scopes exact.
            scope = self._job_scope(job, now)
            if isinstance(scope, _Exact):
                refusals.append(scope.refusal(job, job_limit))
        if self.global_limit and isinstance(self._global, _Exact):
            self._global.expire(now)
            refusals.append(self._global.refusal(GLOBAL, self.global_limit))
        found = [refusal for refusal in refusals if refusal is not None]
        # The run cannot start before both scopes have room, so name the one that frees last.
        return max(found, key=lambda refusal: refusal.next_free) if found else None

    def record(self, job: str, now: float) -> None:
        """A run of `job` started at `now`."""
        self._global.expire(now)
        self._global.add(now)
        scope = self._jobs.get(job)
        if scope is None:
            scope = self._jobs[job] = _scope(job in self.job_limits)
        else:
            scope.expire(now)
        scope.add(now)

    def usage(self, now: float) -> list[ScopeUsage]:
        """Global first, then (by name) every job with a limit or with starts in the window."""
        self._global.expire(now)
        result = [
            ScopeUsage(GLOBAL, self._global.used, self.global_limit, _next_free(self._global))
        ]
        for job in sorted(self._jobs.keys() | self.job_limits.keys()):
            scope = self._job_scope(job, now)
            limit = self.job_limits.get(job, 0)
            if scope is not None:
                result.append(ScopeUsage(job, scope.used, limit, _next_free(scope)))
            elif limit:
                result.append(ScopeUsage(job, 0, limit, None))
        return result

    def runs_last_hour(self, now: float) -> int:
        self._global.expire(now)
        return self._global.used

    def runs_per_minute(self, now: float) -> list[int]:
        """Starts per minute over the last hour, oldest minute first; future starts go last.
        Without a global limit the minutes are the clock's, the oldest sharing the first
        slot with the one before it."""
        self._global.expire(now)
        return self._global.per_minute(now)

    def _job_scope(self, job: str, now: float) -> _Scope | None:
        """The job's starts within the window, or None (and forgotten) when it has none."""
        scope = self._jobs.get(job)
        if scope is None:
            return None
        scope.expire(now)
        if not scope.used:
            del self._jobs[job]  # memory stays bounded by jobs that ran within the hour
            return None
        return scope


def _next_free(scope: _Scope) -> float | None:
    return scope.next_free() if isinstance(scope, _Exact) else None


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
