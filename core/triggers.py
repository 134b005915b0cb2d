"""When a job is due next. Cron slots follow the wall clock in the configured zone;
intervals follow the monotonic clock, so a clock jump never fires a burst."""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from datetime import datetime
from typing import Literal, Protocol
from zoneinfo import ZoneInfo

from watchkeeper.core.config import JobConfig
from watchkeeper.core.cron import CronSchedule

ClockName = Literal["wall", "mono"]


class Schedule(Protocol):
    @property
    def clock(self) -> ClockName:
        """Which clock its slots are read on: wall (cron) or monotonic (intervals)."""
        ...

    @property
    def jitter(self) -> float:
        """Each slot's start is put off by a random amount up to this (seconds)."""
        ...

    def first(self, now: float) -> float:
        """The first slot after `now` (seconds on this schedule's clock)."""
        ...

    def following(self, slot: float, now: float) -> float:
        """The next slot after `slot` that is still ahead of `now`: missed slots are
        skipped, never fired in a burst."""
        ...

    def missed_since(self, last_start: float, now: float) -> bool:
        """Whether a slot fell between a run that started at `last_start` and `now`
        (both wall-clock seconds): what catch-up after downtime looks at."""
        ...


# slots: one of each per scheduled job, and a vault may hold 10,000 jobs.
@dataclass(frozen=True, slots=True)
class EverySchedule:
    interval: float
    clock: ClockName = "mono"
    jitter: float = 0.0

    def first(self, now: float) -> float:
        return now + self.interval

    def following(self, slot: float, now: float) -> float:
        # Keep the phase of the original slot so a late firing does not drift the series.
        steps = max(1, math.ceil((now - slot) / self.interval))
        return slot + steps * self.interval

    def missed_since(self, last_start: float, now: float) -> bool:
        return last_start + self.interval <= now


@dataclass(frozen=True, slots=True)
class CronTrigger:
    cron: CronSchedule
    tz: ZoneInfo
    clock: ClockName = "wall"
    jitter: float = 0.0

    def first(self, now: float) -> float:
        return self.cron.next_after(datetime.fromtimestamp(now, self.tz), self.tz).timestamp()

    def following(self, slot: float, now: float) -> float:
        return self.first(max(slot, now))

    def missed_since(self, last_start: float, now: float) -> bool:
        return self.first(last_start) <= now


def wall_moment(seconds: float, tz: ZoneInfo) -> datetime | None:
    """A wall-clock time in `tz`; None past what a datetime holds (the year 9999), where
    a very long interval can put its next slot."""
    try:
        return datetime.fromtimestamp(seconds, tz)
    except (OverflowError, OSError, ValueError):
        return None


def job_zone(job: JobConfig, tz: ZoneInfo) -> ZoneInfo:
    """The zone a job's cron reads: its own `timezone`, else the keeper's `tz`."""
    return ZoneInfo(job.timezone) if job.timezone else tz


def schedules_for(job: JobConfig, tz: ZoneInfo) -> tuple[Schedule, ...]:
    return _schedules(job.cron, job_zone(job, tz), job.every, job.jitter)


@functools.lru_cache(maxsize=4096)
def _schedules(
    cron: str | None, zone: ZoneInfo, every: float | None, jitter: float
) -> tuple[Schedule, ...]:
    """One (frozen) tuple of schedules for every job with the same trigger: 10,000 jobs
    "every 1h" or "0 * * * *" held one instead of a list and a schedule each."""
    schedules: list[Schedule] = []
    if cron is not None:
        schedules.append(CronTrigger(CronSchedule.parse(cron), zone, "wall", jitter))
    if every is not None:
        schedules.append(EverySchedule(every, "mono", jitter))
    return tuple(schedules)
