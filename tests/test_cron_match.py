"""cron_match finds, for expressions of plain numbers, the naive times croniter finds."""

from __future__ import annotations

from datetime import datetime

from croniter import croniter
from hypothesis import given, settings
from hypothesis import strategies as st

from watchkeeper.core.cron_match import PlainCron

SPANS = {
    "second": (0, 59),
    "minute": (0, 59),
    "hour": (0, 23),
    "day": (1, 31),
    "month": (1, 12),
    "weekday": (0, 7),
}


def field_of(name: str) -> st.SearchStrategy[str]:
    low, high = SPANS[name]
    numbers = st.lists(st.integers(low, high), min_size=1, max_size=4, unique=True)
    return st.one_of(st.just("*"), numbers.map(lambda values: ",".join(map(str, sorted(values)))))


@st.composite
def canonical(draw: st.DrawFn) -> tuple[str, bool]:
    seconds = draw(st.booleans())
    names = ["second"] * seconds + ["minute", "hour", "day", "month", "weekday"]
    fields = [draw(field_of(name)) for name in names]
    if fields[-3] != "*" and fields[-2] != "*" and fields[-1] == "*":
        # What core.cron refuses (a day no chosen month has) never reaches either.
        days, months = fields[-3].split(","), fields[-2].split(",")
        longest = {2: 29, 4: 30, 6: 30, 9: 30, 11: 30}
        if min(map(int, days)) > max(longest.get(int(m), 31) for m in months):
            fields[-3] = "1"
    return " ".join(fields), seconds


@settings(max_examples=400, deadline=None)
@given(canonical(), st.datetimes(datetime(1999, 1, 1), datetime(2040, 12, 31)))
def test_the_next_match_is_croniters(expression: tuple[str, bool], start: datetime) -> None:
    text, seconds = expression
    plain = PlainCron.parse(text, seconds)
    assert plain is not None
    expected = croniter(
        text, start_time=datetime(2000, 1, 1), ret_type=datetime, second_at_beginning=seconds
    ).get_next(datetime, start_time=start)
    assert plain.next_after(start) == expected


def test_only_plain_numbers_are_matched_here() -> None:
    assert PlainCron.parse("0 0 l * *", False) is None
    assert PlainCron.parse("0 0 15w * *", False) is None
    assert PlainCron.parse("0 0 * * 5#3", False) is None
    assert PlainCron.parse("0,30 */1 * * 1,3", False) is None  # not canonical: a step
    assert PlainCron.parse("0,30 1,2 * * 1,3", False) is not None


def test_schedules_of_plain_numbers_never_import_croniter() -> None:
    import subprocess
    import sys

    script = (
        "import sys\nfrom datetime import datetime, UTC\nfrom zoneinfo import ZoneInfo\n"
        "from watchkeeper.core.cron import CronSchedule\n"
        "s = CronSchedule.parse('*/5 9-17 * * mon-fri')\n"
        "s.upcoming(datetime.now(UTC), ZoneInfo('Europe/Berlin'), 50)\n"
        "print('croniter' in sys.modules)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    )
    assert done.stdout.strip() == "False"
