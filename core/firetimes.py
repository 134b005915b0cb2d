"""A job's next fire times: what the console's job screen and `watchkeeper describe` show."""

from __future__ import annotations

import heapq
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from watchkeeper.core.config import JobConfig
from watchkeeper.core.cron import CronSchedule
from watchkeeper.core.triggers import job_zone

FIRE_TIMES = 5


@dataclass(frozen=True)
class FireTime:
    moment: datetime
    source: str  # "cron" or "every"


def _parse(text: object) -> datetime | None:
    if not isinstance(text, str) or not text:
        return None
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        return None


def fire_times(
    job: JobConfig | None,
    view: dict[str, Any] | None,
    now: datetime,
    tz: ZoneInfo,
    count: int = FIRE_TIMES,
) -> list[FireTime]:
    """The next `count` slots of a job: cron slots from its expression, interval slots
    from the keeper's next run in `view` (only the keeper knows an interval's phase)."""
    if job is None or not job.enabled or count <= 0:
        return []
    zone = job_zone(job, tz)
    cron_times = CronSchedule.parse(job.cron).upcoming(now, zone, count) if job.cron else []
    series: list[Iterable[FireTime]] = [(FireTime(moment, "cron") for moment in cron_times)]
    if job.every is not None:
        every = job.every
        next_run = _parse((view or {}).get("next_run"))
        # The keeper's next run is the interval's slot unless a cron slot comes first;
        # then the interval's phase is not known here, and now + every is a fair guess.
        if next_run is None or (cron_times and next_run.timestamp() >= cron_times[0].timestamp()):
            next_run = now + timedelta(seconds=every)
        first = next_run
        series.append(
            FireTime(first + timedelta(seconds=every * step), "every") for step in range(count)
        )
    merged = heapq.merge(*series, key=lambda fire: fire.moment.timestamp())
    return [fire for _, fire in zip(range(count), merged, strict=False)]
