"""Cron expressions and their fire times in an IANA zone, across DST changes as cronie does.

Expressions have the 5 classic fields (minute hour day-of-month month day-of-week), or 6
with seconds first (as Quartz, jobber and supercronic read them), or a nickname such as
``@daily``. Field syntax is validated here so errors name the field; croniter then finds
matching *naive* wall-clock times, and this module maps each one onto real instants:

* a wall time in a spring-forward gap: a fixed-time job runs once, at the first instant
  after the gap; a wildcard job (minute or hour field starting with ``*``) skips it;
* a wall time in the repeated autumn hour: a fixed-time job runs once, at the first
  occurrence; a wildcard job runs at both, since it follows real elapsed time.

Returned datetimes carry ``tz`` and the right ``fold``. Python compares and subtracts two
datetimes that share a tzinfo by wall clock alone, ignoring fold and offset, so callers
must compare or subtract fire times via ``.timestamp()`` or after ``.astimezone(UTC)``.
"""

from __future__ import annotations

import copy
import functools
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from watchkeeper.core.cron_match import PlainCron

if TYPE_CHECKING:
    from zoneinfo import ZoneInfo

    from croniter import croniter

NICKNAMES = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}

_MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_MONTH_NAMES = {name: i for i, name in enumerate(_MONTHS, start=1)}
_DOW_NAMES = {"sun": 0, "mon": 1, "tue": 2, "wed": 3, "thu": 4, "fri": 5, "sat": 6}
# Longest length of each month, leap day included: a day-of-month is impossible only
# if it exceeds every chosen month even in a leap year.
_MONTH_DAYS = dict(enumerate((31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31), start=1))


@dataclass(frozen=True)
class _Field:
    name: str
    low: int
    high: int
    names: dict[str, int]


_SECOND = _Field("second", 0, 59, {})
_MINUTE = _Field("minute", 0, 59, {})
_HOUR = _Field("hour", 0, 23, {})
_DOM = _Field("day-of-month", 1, 31, {})
_MONTH = _Field("month", 1, 12, _MONTH_NAMES)
_DOW = _Field("day-of-week", 0, 7, _DOW_NAMES)  # 0 and 7 are both Sunday

_ITEM = re.compile(r"(\*|[a-z0-9]+)(?:-([a-z0-9]+))?(?:/([0-9]+))?", re.IGNORECASE)
_NEAREST_WEEKDAY = re.compile(r"([0-9]+)w", re.IGNORECASE)
_NTH_WEEKDAY = re.compile(r"([a-z0-9]+)#([0-9]+)", re.IGNORECASE)

# A wildcard job whose every slot fell into spring-forward gaps would skip gaps forever;
# no real zone and expression do that, but a century of skipped gaps is enough to say so.
_MAX_GAP_SKIPS = 100


def _value(text: str, spec: _Field, item: str) -> int:
    if text.isdigit():
        number = int(text)
    elif text.lower() in spec.names:
        number = spec.names[text.lower()]
    else:
        raise ValueError(f"{spec.name} field: {item!r} is not a number or a known name")
    if not spec.low <= number <= spec.high:
        raise ValueError(
            f"{spec.name} field: {number} in {item!r} is out of range {spec.low}-{spec.high}"
        )
    return number


def _expand_item(item: str, spec: _Field) -> list[int]:
    match = _ITEM.fullmatch(item)
    if match is None:
        raise ValueError(f"{spec.name} field: cannot read {item!r}")
    start_text, end_text, step_text = match.groups()
    span = 7 if spec is _DOW else spec.high - spec.low + 1
    step = 1
    if step_text is not None:
        step = int(step_text)
        if not 1 <= step <= span:
            raise ValueError(f"{spec.name} field: step in {item!r} must be 1-{span}")
    if start_text == "*":
        if end_text is not None:
            raise ValueError(f"{spec.name} field: cannot read {item!r}")
        start, end = spec.low, spec.high
    else:
        start = _value(start_text, spec, item)
        if end_text is not None:
            end = _value(end_text, spec, item)
            if spec is _DOW and end == 0 and start > 0:
                end = 7  # "fri-sun" reads as Friday through Sunday
        else:
            # "5/15" is Quartz's "from 5 every 15"; a bare "5" is just 5.
            end = spec.high if step_text is not None else start
        if start > end:
            raise ValueError(
                f"{spec.name} field: range {item!r} runs backwards; split it, e.g. "
                f"'{start}-{spec.high},{spec.low}-{end}'"
            )
    return list(range(start, end + 1, step))


def _canonical_field(text: str, spec: _Field) -> str:
    """Validated field as an explicit list croniter reads without its own range quirks."""
    if text == "*" or (text == "?" and spec in (_DOM, _DOW)):
        return "*"
    values: set[int] = set()
    specials: list[str] = []
    for item in text.split(","):
        if not item:
            raise ValueError(f"{spec.name} field: empty item in {text!r}")
        if spec is _DOM and item.lower() == "l":
            specials.append("l")
        elif spec is _DOM and (weekday := _NEAREST_WEEKDAY.fullmatch(item)):
            specials.append(f"{_value(weekday.group(1), spec, item)}w")
        elif spec is _DOW and (nth := _NTH_WEEKDAY.fullmatch(item)):
            if not 1 <= int(nth.group(2)) <= 5:
                raise ValueError(f"{spec.name} field: the n in {item!r} must be 1-5")
            specials.append(f"{_value(nth.group(1), spec, item) % 7}#{nth.group(2)}")
        else:
            values.update(_expand_item(item, spec))
    return ",".join([*map(str, sorted(values)), *specials])


def _check_possible(expr: str, dom: str, month: str, dow: str) -> None:
    """Reject dates that never exist ("0 0 30 2 *"), which croniter would search for 50 years."""
    if dow != "*" or dom == "*" or month == "*":
        return  # under the OR rule a restricted day-of-week always supplies dates
    days = [int(d) for d in dom.split(",") if d.isdigit()]
    if len(days) != len(dom.split(",")):
        return  # L and nW always land on an existing day
    longest = max(_MONTH_DAYS[int(m)] for m in month.split(","))
    if min(days) > longest:
        raise ValueError(
            f"cron {expr!r}: day-of-month {dom} never occurs in month {month}; it would never run"
        )


def _naive(moment: datetime) -> datetime:
    return moment.replace(tzinfo=None, fold=0)


_ORDINARY, _REPEATED, _MISSING = 0, 1, 2
_ONE_SECOND = timedelta(seconds=1)


def _kind(wall: datetime, tz: ZoneInfo) -> int:
    """Whether a naive wall time is ordinary, repeated (autumn) or missing (spring)."""
    first = wall.replace(tzinfo=tz, fold=0)
    if first.utcoffset() == wall.replace(tzinfo=tz, fold=1).utcoffset():
        return _ORDINARY
    return _REPEATED if _naive(first.astimezone(UTC).astimezone(tz)) == wall else _MISSING


def _transition(wall: datetime, tz: ZoneInfo) -> int:
    """The POSIX second of the zone's offset change that makes ``wall`` missing or repeated.

    Its two fold readings lie on either side of the change, so a binary search over whole
    seconds between them finds it (zone transitions fall on whole seconds).
    """
    a = int(wall.replace(tzinfo=tz, fold=0).timestamp())
    b = int(wall.replace(tzinfo=tz, fold=1).timestamp())
    lo, hi = min(a, b), max(a, b)
    before = datetime.fromtimestamp(lo, tz).utcoffset()
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if datetime.fromtimestamp(mid, tz).utcoffset() == before:
            lo = mid
        else:
            hi = mid
    return hi


@dataclass(frozen=True)
class CronSchedule:
    """A validated cron expression. ``CronSchedule(expr)`` and ``parse`` both validate."""

    expr: str
    # cronie's MIN_STAR/HR_STAR: such jobs follow elapsed time through DST changes.
    wildcard: bool = field(init=False, compare=False)
    has_seconds: bool = field(init=False, compare=False)
    _canonical: str = field(init=False, compare=False, repr=False)
    _plain: PlainCron | None = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.expr, str):
            raise ValueError(f"cron expression must be a string, got {self.expr!r}")
        text = self.expr.strip()
        if text.startswith("@"):
            text = text.lower()
            if text not in NICKNAMES:
                raise ValueError(
                    f"cron {self.expr!r}: unknown nickname; use one of {', '.join(NICKNAMES)}"
                )
            text = NICKNAMES[text]
        parts = text.split()
        if len(parts) not in (5, 6):
            raise ValueError(
                f"cron {self.expr!r}: expected 5 fields (minute hour day month weekday) "
                f"or 6 with seconds first, got {len(parts)}"
            )
        specs: tuple[_Field, ...] = (_MINUTE, _HOUR, _DOM, _MONTH, _DOW)
        if len(parts) == 6:
            specs = (_SECOND, *specs)
        try:
            canonical = [
                _canonical_field(part, spec) for part, spec in zip(parts, specs, strict=True)
            ]
        except ValueError as exc:
            raise ValueError(f"cron {self.expr!r}: {exc}") from None
        _check_possible(self.expr, *canonical[-3:])
        minute, hour = parts[-5], parts[-4]
        object.__setattr__(self, "wildcard", minute.startswith("*") or hour.startswith("*"))
        object.__setattr__(self, "has_seconds", len(parts) == 6)
        object.__setattr__(self, "_canonical", " ".join(canonical))
        # Plain numbers always make a valid expression with fire times (_check_possible),
        # matched by cron_match; croniter (with dateutil, ~45 ms to import) is made, and
        # judges the expression, only for what it alone reads: L, nW and d#n.
        object.__setattr__(self, "_plain", PlainCron.parse(self._canonical, self.has_seconds))
        if self._plain is None:
            object.__setattr__(self, "_cron", self._croniter())

    def _croniter(self) -> croniter[datetime]:
        from croniter import CroniterBadDateError, CroniterError, croniter

        try:
            cron = croniter(
                self._canonical,
                start_time=datetime(2000, 1, 1),
                ret_type=datetime,
                second_at_beginning=self.has_seconds,
            )
        except CroniterError as exc:
            raise ValueError(f"cron {self.expr!r}: {exc}") from None
        # croniter cannot split an nth-weekday OR rule ("0 0 31 2 1#5"): its bounded search
        # finds nothing, and a schedule whose next fire time raises breaks status and
        # reloads later. Asked once here (a few ms at worst), it is refused instead.
        try:
            copy.copy(cron).get_next(datetime)
        except CroniterBadDateError:
            raise ValueError(
                f"cron {self.expr!r}: never fires (no fire time within 50 years)"
            ) from None
        return cron

    # Made on first use (or at once, above), then kept: next_after works on copies of it.
    _cron = functools.cached_property(_croniter)

    @classmethod
    def parse(cls, expr: str) -> CronSchedule:
        """Validate ``expr``; ValueError names the field and the problem. Equal expressions
        share one instance, so 10,000 jobs on ``0 * * * *`` hold one croniter, not 10,000."""
        if not isinstance(expr, str):
            return cls(expr)  # raises the ValueError; an unhashable expr cannot be cached
        return _parsed(expr)

    def next_after(self, moment: datetime, tz: ZoneInfo) -> datetime:
        """The first fire time strictly after ``moment`` (aware), in ``tz`` with its fold."""
        if moment.tzinfo is None or moment.utcoffset() is None:
            raise ValueError(f"moment must be timezone-aware, got {moment!r}")
        # croniter keeps its position on the instance: a copy keeps calls independent,
        # and lets every job and thread share the one instance parse hands out.
        cron = self._plain or copy.copy(self._cron)
        local = moment.astimezone(tz)
        wall = _naive(local).replace(microsecond=0)
        slot = self._match(cron, wall, inclusive=False)
        if _kind(wall, tz) == _REPEATED:
            # The repeated wall times are [repeat_start, repeat_end): the change read on
            # the new offset, then on the old one.
            change = _transition(wall, tz)
            repeat_start = _naive(datetime.fromtimestamp(change, tz))
            repeat_end = _naive(datetime.fromtimestamp(change - 1, tz)) + _ONE_SECOND
            if local.fold == 0:
                # The rest of the first pass has no slot, so the second pass comes next.
                if self.wildcard and slot >= repeat_end:
                    again = self._match(cron, repeat_start, inclusive=True)
                    if again < repeat_end:
                        return again.replace(tzinfo=tz, fold=1)
            elif slot < repeat_end:
                if self.wildcard:
                    return slot.replace(tzinfo=tz, fold=1)
                # Fixed-time slots of the repeated hour already ran in the first pass.
                slot = self._match(cron, repeat_end, inclusive=True)
        return self._resolve(cron, slot, tz)

    def upcoming(self, moment: datetime, tz: ZoneInfo, count: int) -> list[datetime]:
        """The next ``count`` fire times after ``moment``, oldest first."""
        if count < 0:
            raise ValueError(f"count must be >= 0, got {count}")
        times: list[datetime] = []
        for _ in range(count):
            moment = self.next_after(moment, tz)
            times.append(moment)
        return times

    def _resolve(
        self, cron: PlainCron | croniter[datetime], slot: datetime, tz: ZoneInfo
    ) -> datetime:
        """Map a matching wall time onto its first real instant, per cronie's DST rules."""
        for _ in range(_MAX_GAP_SKIPS):
            if _kind(slot, tz) != _MISSING:
                return slot.replace(tzinfo=tz, fold=0)
            gap_end = datetime.fromtimestamp(_transition(slot, tz), tz)
            if not self.wildcard:
                return gap_end
            slot = self._match(cron, _naive(gap_end), inclusive=True)
        raise ValueError(
            f"cron {self.expr!r}: every fire time falls into a skipped DST hour in {tz.key}"
        )

    def _match(
        self, cron: PlainCron | croniter[datetime], wall: datetime, *, inclusive: bool
    ) -> datetime:
        """First matching naive wall time after ``wall`` (or at it, when inclusive)."""
        # croniter steps past its start by one unit, then rounds down to that unit.
        start = wall - _ONE_SECOND if inclusive else wall
        if isinstance(cron, PlainCron):
            found = cron.next_after(start)
            if found is None:
                raise ValueError(f"cron {self.expr!r}: no fire time within 50 years")
            return found
        from croniter import CroniterBadDateError

        try:
            return cron.get_next(datetime, start_time=start)
        except CroniterBadDateError:
            raise ValueError(f"cron {self.expr!r}: no fire time within 50 years") from None


# Sharing is safe: a CronSchedule is frozen and next_after works on a copy of its croniter
# (a PlainCron keeps no position).
# Bounded, so a vault whose expressions keep changing across reloads cannot grow it forever.
@functools.lru_cache(maxsize=1024)
def _parsed(expr: str) -> CronSchedule:
    return CronSchedule(expr)
