"""The next naive wall-clock time a cron expression of plain numbers matches, as croniter
finds it, without croniter: most expressions ("*/5 * * * *", "0 3 * * mon-fri") are
plain, and croniter with dateutil costs ~45 ms to import, which `--status` and `jobs`
would otherwise pay for every cron job's next run. Expressions with L, nW or d#n go to
croniter (core/cron.py decides); tests/test_cron_match.py holds the two to the same
answers.

Input is core.cron's canonical form: each field "*" or a comma-separated list of numbers.
"""

from __future__ import annotations

from bisect import bisect_left
from dataclasses import dataclass
from datetime import date, datetime, timedelta

SEARCH_YEARS = 50  # croniter gives up after as long


@dataclass(frozen=True)
class PlainCron:
    seconds: tuple[int, ...]
    minutes: tuple[int, ...]
    hours: tuple[int, ...]
    days: frozenset[int] | None  # None: "*"
    months: frozenset[int]
    weekdays: frozenset[int] | None  # 0 = Sunday; None: "*"
    step: timedelta  # a second with a seconds field, else a minute

    @classmethod
    def parse(cls, canonical: str, has_seconds: bool) -> PlainCron | None:
        """None when a field holds more than numbers (L, nW, d#n)."""
        fields = canonical.split()
        if not has_seconds:
            fields = ["0", *fields]
        if not all(part == "*" or part.replace(",", "").isdigit() for part in fields):
            return None
        spans = ((0, 59), (0, 59), (0, 23), (1, 31), (1, 12), (0, 7))
        values = [
            range(low, high + 1) if part == "*" else sorted({int(v) for v in part.split(",")})
            for part, (low, high) in zip(fields, spans, strict=True)
        ]
        second, minute, hour, day, month, weekday = values
        return cls(
            tuple(second),
            tuple(minute),
            tuple(hour),
            None if fields[3] == "*" else frozenset(day),
            frozenset(month),
            None if fields[5] == "*" else frozenset(v % 7 for v in weekday),
            timedelta(seconds=1) if has_seconds else timedelta(minutes=1),
        )

    def _day_matches(self, day: date) -> bool:
        weekday = day.isoweekday() % 7
        if self.days is not None and self.weekdays is not None:
            return day.day in self.days or weekday in self.weekdays  # cron's OR rule
        return (self.days is None or day.day in self.days) and (
            self.weekdays is None or weekday in self.weekdays
        )

    def _first_time(self, hour: int, minute: int, second: int) -> tuple[int, int, int] | None:
        """The first matching (hour, minute, second) at or after the given one, that day."""
        for h in self.hours[bisect_left(self.hours, hour) :]:
            m_from = minute if h == hour else 0
            for m in self.minutes[bisect_left(self.minutes, m_from) :]:
                s_from = second if (h, m) == (hour, minute) else 0
                at = bisect_left(self.seconds, s_from)
                if at < len(self.seconds):
                    return h, m, self.seconds[at]
        return None

    def next_after(self, start: datetime) -> datetime | None:
        """The first match strictly after `start` (naive) at the expression's resolution,
        as croniter's get_next gives it; None when there is none within SEARCH_YEARS."""
        truncated = start.replace(microsecond=0)
        if self.step == timedelta(minutes=1):
            truncated = truncated.replace(second=0)
        moment = truncated + self.step
        day, clock = moment.date(), (moment.hour, moment.minute, moment.second)
        last = date(min(day.year + SEARCH_YEARS, 9999), 12, 31)
        while day < last:
            if day.month not in self.months:
                day = date(day.year + day.month // 12, day.month % 12 + 1, 1)
                clock = (0, 0, 0)
                continue
            if self._day_matches(day):
                found = self._first_time(*clock)
                if found is not None:
                    return datetime(day.year, day.month, day.day, *found)
            day, clock = day + timedelta(days=1), (0, 0, 0)
        return None
