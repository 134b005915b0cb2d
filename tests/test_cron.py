"""Cron parsing and fire times, above all across the DST changes of 2026."""

from __future__ import annotations

import itertools
import tracemalloc
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from watchkeeper.core.cron import CronSchedule

BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")
# Local midnight of each 2026 change day.
CHANGES = {
    BERLIN: (datetime(2026, 3, 29), datetime(2026, 10, 25)),
    NEW_YORK: (datetime(2026, 3, 8), datetime(2026, 11, 1)),
}


def fires(expr: str, start: str, tz: ZoneInfo, count: int) -> list[str]:
    moment = datetime.fromisoformat(start)
    return [t.isoformat() for t in CronSchedule.parse(expr).upcoming(moment, tz, count)]


# isoformat carries the offset, so each expected string pins one exact instant and fold.
DST_CASES = [
    # Berlin spring: 02:00 CET jumps to 03:00 CEST.
    (
        "30 2 * * *",
        BERLIN,
        "2026-03-28T12:00+01:00",
        ["2026-03-29T03:00:00+02:00", "2026-03-30T02:30:00+02:00"],
    ),
    (
        "0 2 * * *",
        BERLIN,
        "2026-03-28T12:00+01:00",
        ["2026-03-29T03:00:00+02:00", "2026-03-30T02:00:00+02:00"],
    ),
    (
        "*/15 * * * *",
        BERLIN,
        "2026-03-29T01:30+01:00",
        ["2026-03-29T01:45:00+01:00", "2026-03-29T03:00:00+02:00", "2026-03-29T03:15:00+02:00"],
    ),
    (
        "0 * * * *",
        BERLIN,
        "2026-03-29T00:30+01:00",
        ["2026-03-29T01:00:00+01:00", "2026-03-29T03:00:00+02:00", "2026-03-29T04:00:00+02:00"],
    ),
    # Berlin autumn: 03:00 CEST falls back to 02:00 CET; 02:00-02:59 happens twice.
    (
        "30 2 * * *",
        BERLIN,
        "2026-10-24T12:00+02:00",
        ["2026-10-25T02:30:00+02:00", "2026-10-26T02:30:00+01:00"],
    ),
    (
        "0 2 * * *",
        BERLIN,
        "2026-10-24T12:00+02:00",
        ["2026-10-25T02:00:00+02:00", "2026-10-26T02:00:00+01:00"],
    ),
    (
        "*/15 * * * *",
        BERLIN,
        "2026-10-25T01:50+02:00",
        [
            "2026-10-25T02:00:00+02:00",
            "2026-10-25T02:15:00+02:00",
            "2026-10-25T02:30:00+02:00",
            "2026-10-25T02:45:00+02:00",
            "2026-10-25T02:00:00+01:00",
            "2026-10-25T02:15:00+01:00",
            "2026-10-25T02:30:00+01:00",
            "2026-10-25T02:45:00+01:00",
            "2026-10-25T03:00:00+01:00",
        ],
    ),
    (
        "0 * * * *",
        BERLIN,
        "2026-10-25T00:30+02:00",
        [
            "2026-10-25T01:00:00+02:00",
            "2026-10-25T02:00:00+02:00",
            "2026-10-25T02:00:00+01:00",
            "2026-10-25T03:00:00+01:00",
        ],
    ),
    # New York spring: 02:00 EST jumps to 03:00 EDT.
    (
        "30 2 * * *",
        NEW_YORK,
        "2026-03-07T12:00-05:00",
        ["2026-03-08T03:00:00-04:00", "2026-03-09T02:30:00-04:00"],
    ),
    (
        "0 2 * * *",
        NEW_YORK,
        "2026-03-07T12:00-05:00",
        ["2026-03-08T03:00:00-04:00", "2026-03-09T02:00:00-04:00"],
    ),
    (
        "*/15 * * * *",
        NEW_YORK,
        "2026-03-08T01:30-05:00",
        ["2026-03-08T01:45:00-05:00", "2026-03-08T03:00:00-04:00", "2026-03-08T03:15:00-04:00"],
    ),
    (
        "0 * * * *",
        NEW_YORK,
        "2026-03-08T00:30-05:00",
        ["2026-03-08T01:00:00-05:00", "2026-03-08T03:00:00-04:00"],
    ),
    # New York autumn: 02:00 EDT falls back to 01:00 EST; 01:00-01:59 happens twice.
    (
        "15 1 * * *",
        NEW_YORK,
        "2026-10-31T12:00-04:00",
        ["2026-11-01T01:15:00-04:00", "2026-11-02T01:15:00-05:00"],
    ),
    (
        "30 2 * * *",
        NEW_YORK,
        "2026-10-31T12:00-04:00",
        ["2026-11-01T02:30:00-05:00", "2026-11-02T02:30:00-05:00"],
    ),
    (
        "*/15 * * * *",
        NEW_YORK,
        "2026-11-01T00:50-04:00",
        [
            "2026-11-01T01:00:00-04:00",
            "2026-11-01T01:15:00-04:00",
            "2026-11-01T01:30:00-04:00",
            "2026-11-01T01:45:00-04:00",
            "2026-11-01T01:00:00-05:00",
            "2026-11-01T01:15:00-05:00",
            "2026-11-01T01:30:00-05:00",
            "2026-11-01T01:45:00-05:00",
            "2026-11-01T02:00:00-05:00",
        ],
    ),
    (
        "0 * * * *",
        NEW_YORK,
        "2026-11-01T00:30-04:00",
        ["2026-11-01T01:00:00-04:00", "2026-11-01T01:00:00-05:00", "2026-11-01T02:00:00-05:00"],
    ),
]


@pytest.mark.parametrize(("expr", "tz", "start", "expected"), DST_CASES)
def test_dst_changes(expr: str, tz: ZoneInfo, start: str, expected: list[str]) -> None:
    assert fires(expr, start, tz, len(expected)) == expected


def test_results_are_in_the_zone_with_their_fold() -> None:
    schedule = CronSchedule.parse("0 * * * *")
    second = schedule.next_after(datetime(2026, 10, 25, 2, tzinfo=BERLIN), BERLIN)
    assert second.tzinfo is BERLIN
    assert (second.hour, second.fold) == (2, 1)
    assert second.astimezone(UTC) == datetime(2026, 10, 25, 1, tzinfo=UTC)


def test_moment_in_any_zone_gives_the_same_answer() -> None:
    schedule = CronSchedule.parse("*/15 * * * *")
    local = datetime(2026, 10, 25, 2, 50, tzinfo=BERLIN)  # first pass, CEST
    from_utc = schedule.next_after(local.astimezone(UTC), BERLIN)
    assert from_utc.isoformat() == schedule.next_after(local, BERLIN).isoformat()
    assert from_utc.isoformat() == "2026-10-25T02:00:00+01:00"


def test_fixed_job_does_not_rerun_in_the_repeated_hour() -> None:
    schedule = CronSchedule.parse("30 2 * * *")
    second_pass = datetime(2026, 10, 25, 2, 10, tzinfo=BERLIN, fold=1)  # 02:10 CET
    assert schedule.next_after(second_pass, BERLIN).isoformat() == "2026-10-26T02:30:00+01:00"


def test_gap_slots_collapse_into_one_run_without_doubling_a_regular_slot() -> None:
    got = fires("0,30 2,3 * * *", "2026-03-29T01:59+01:00", BERLIN, 3)
    assert got == [
        "2026-03-29T03:00:00+02:00",
        "2026-03-29T03:30:00+02:00",
        "2026-03-30T02:00:00+02:00",
    ]


def test_wildcard_hour_job_skips_the_gap() -> None:
    # A '*' leading the hour (HR_STAR) or the minute (MIN_STAR) makes a wildcard job:
    # "20 * * * *" skips the missing 02:20, "*/20 2 * * *" all of its missing 02:xx.
    assert fires("20 * * * *", "2026-03-29T01:30+01:00", BERLIN, 2) == [
        "2026-03-29T03:20:00+02:00",
        "2026-03-29T04:20:00+02:00",
    ]
    assert fires("*/20 2 * * *", "2026-03-29T01:30+01:00", BERLIN, 1) == [
        "2026-03-30T02:00:00+02:00"
    ]


@pytest.mark.parametrize(
    ("expr", "wildcard"),
    [
        ("*/15 * * * *", True),
        ("0 * * * *", True),
        ("* 3 * * *", True),
        ("30 2 * * *", False),
        ("0-59 2 * * *", False),
        ("* 30 2 * * *", False),  # seconds do not count
        ("0 * 2 * * *", True),
        ("@hourly", True),
        ("@daily", False),
    ],
)
def test_wildcard_follows_minute_and_hour_fields(expr: str, wildcard: bool) -> None:
    assert CronSchedule.parse(expr).wildcard is wildcard


def test_next_after_is_strictly_after_the_moment() -> None:
    schedule = CronSchedule.parse("0 3 * * *")
    at_fire = datetime(2026, 6, 1, 3, tzinfo=BERLIN)
    assert schedule.next_after(at_fire, BERLIN).isoformat() == "2026-06-02T03:00:00+02:00"
    just_before = at_fire - timedelta(microseconds=1)
    assert schedule.next_after(just_before, BERLIN).isoformat() == "2026-06-01T03:00:00+02:00"


def test_naive_moment_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        CronSchedule.parse("* * * * *").next_after(datetime(2026, 1, 1), BERLIN)


# --- six fields, seconds first ----------------------------------------------------------


def test_six_fields_read_seconds_first() -> None:
    schedule = CronSchedule.parse("15 30 9 * * *")
    assert schedule.has_seconds
    assert fires("15 30 9 * * *", "2026-05-01T00:00+02:00", BERLIN, 2) == [
        "2026-05-01T09:30:15+02:00",
        "2026-05-02T09:30:15+02:00",
    ]
    assert fires("*/20 * * * * *", "2026-05-01T12:00:05+02:00", BERLIN, 3) == [
        "2026-05-01T12:00:20+02:00",
        "2026-05-01T12:00:40+02:00",
        "2026-05-01T12:01:00+02:00",
    ]


def test_six_field_fixed_job_runs_once_after_the_gap() -> None:
    # 60 missing seconds at 02:30 collapse into one run at 03:00 CEST.
    assert fires("* 30 2 * * *", "2026-03-29T01:00+01:00", BERLIN, 2) == [
        "2026-03-29T03:00:00+02:00",
        "2026-03-30T02:30:00+02:00",
    ]


def test_six_field_wildcard_runs_both_passes_of_the_repeated_hour() -> None:
    got = fires("0 */30 * * * *", "2026-10-25T02:45+02:00", BERLIN, 4)
    assert got == [
        "2026-10-25T02:00:00+01:00",
        "2026-10-25T02:30:00+01:00",
        "2026-10-25T03:00:00+01:00",
        "2026-10-25T03:30:00+01:00",
    ]


# --- nicknames, names, day rules --------------------------------------------------------


@pytest.mark.parametrize(
    ("nickname", "start", "expected"),
    [
        ("@hourly", "2026-05-01T10:20+02:00", "2026-05-01T11:00:00+02:00"),
        ("@daily", "2026-05-01T10:20+02:00", "2026-05-02T00:00:00+02:00"),
        ("@midnight", "2026-05-01T10:20+02:00", "2026-05-02T00:00:00+02:00"),
        ("@weekly", "2026-05-01T10:20+02:00", "2026-05-03T00:00:00+02:00"),  # a Sunday
        ("@monthly", "2026-05-01T10:20+02:00", "2026-06-01T00:00:00+02:00"),
        ("@yearly", "2026-05-01T10:20+02:00", "2027-01-01T00:00:00+01:00"),
        ("@annually", "2026-05-01T10:20+02:00", "2027-01-01T00:00:00+01:00"),
        ("@Daily", "2026-05-01T10:20+02:00", "2026-05-02T00:00:00+02:00"),
    ],
)
def test_nicknames(nickname: str, start: str, expected: str) -> None:
    assert fires(nickname, start, BERLIN, 1) == [expected]


def test_day_of_month_or_day_of_week_when_both_are_restricted() -> None:
    # May 2026: Fridays are the 1st, 8th, 15th, 22nd, 29th; the 13th is a Wednesday.
    got = fires("0 12 13 * fri", "2026-05-02T00:00+02:00", BERLIN, 4)
    assert got == [
        "2026-05-08T12:00:00+02:00",
        "2026-05-13T12:00:00+02:00",
        "2026-05-15T12:00:00+02:00",
        "2026-05-22T12:00:00+02:00",
    ]


def test_unrestricted_day_field_does_not_widen_the_other() -> None:
    assert fires("0 12 * * fri", "2026-05-02T00:00+02:00", BERLIN, 2) == [
        "2026-05-08T12:00:00+02:00",
        "2026-05-15T12:00:00+02:00",
    ]
    assert fires("0 12 13 * ?", "2026-05-02T00:00+02:00", BERLIN, 2) == [
        "2026-05-13T12:00:00+02:00",
        "2026-06-13T12:00:00+02:00",
    ]


@pytest.mark.parametrize(
    ("expr", "same_as"),
    [
        ("0 9 * * 7", "0 9 * * 0"),
        ("0 9 * * SUN", "0 9 * * 0"),
        ("0 9 * * fri-sun", "0 9 * * 5,6,0"),
        ("0 9 * JAN-MAR mon-fri", "0 9 * 1-3 1-5"),
        ("5-5 * * * *", "5 * * * *"),  # croniter alone reads an equal range as every minute
        ("0/20 * * * *", "0,20,40 * * * *"),
        ("0 9 * * 1-7/2", "0 9 * * 1,3,5,0"),
    ],
)
def test_equivalent_spellings(expr: str, same_as: str) -> None:
    start = "2026-01-01T00:00+01:00"
    assert fires(expr, start, BERLIN, 30) == fires(same_as, start, BERLIN, 30)


def test_leap_day_and_last_day() -> None:
    assert fires("0 0 29 2 *", "2026-01-01T00:00+01:00", BERLIN, 1) == ["2028-02-29T00:00:00+01:00"]
    assert fires("0 0 L 2 *", "2027-03-01T00:00+01:00", BERLIN, 1) == ["2028-02-29T00:00:00+01:00"]


@pytest.mark.parametrize(
    ("expr", "message"),
    [
        ("", "expected 5 fields"),
        ("* * * *", "got 4"),
        ("* * * * * * *", "got 7"),
        ("60 * * * *", "minute field: 60 in '60' is out of range 0-59"),
        ("* 24 * * *", "hour field"),
        ("* * 0 * *", "day-of-month field"),
        ("* * 32 * *", "day-of-month field"),
        ("* * * 13 *", "month field"),
        ("* * * * 8", "day-of-week field"),
        ("60 * * * * *", "second field"),
        ("*/0 * * * *", "step"),
        ("1,,2 * * * *", "empty item"),
        ("5-1 * * * *", "runs backwards"),
        ("H * * * *", "'H' is not a number"),
        ("* * * foo *", "'foo' is not a number"),
        ("-5 * * * *", "cannot read"),
        ("*-5 * * * *", "cannot read"),
        ("? * * * *", "minute field"),
        ("* * * * 1#6", "must be 1-5"),
        ("@reboot", "unknown nickname"),
        ("0 0 30 2 *", "never occurs"),
        ("0 0 31 4,6,9,11 *", "never occurs"),
    ],
)
def test_parse_errors_name_the_problem(expr: str, message: str) -> None:
    with pytest.raises(ValueError, match="cron .*" + message.replace("*", r"\*")):
        CronSchedule.parse(expr)


def test_dates_impossible_only_on_one_side_of_the_or_rule_are_accepted() -> None:
    # The 30th never comes in February, but its Mondays do.
    assert fires("0 0 30 2 mon", "2026-01-01T00:00+01:00", BERLIN, 1) == [
        "2026-02-02T00:00:00+01:00"
    ]


@pytest.mark.parametrize("expr", ["0 0 31 2 1#5", "2 2 4 2 1#5"])
def test_expression_that_never_fires_is_refused_at_parse(expr: str) -> None:
    # croniter cannot split an nth-weekday OR rule; its bounded search gives up. Accepted,
    # such a job made next_after raise in every status and reload (issue 14).
    with pytest.raises(ValueError, match="never fires"):
        CronSchedule.parse(expr)


def test_rare_but_real_fire_times_are_kept() -> None:
    # Feb 29 as the fifth Monday: once in 28 years.
    assert fires("0 0 29 2 1#5", "2026-01-01T00:00+01:00", BERLIN, 1) == [
        "2044-02-29T00:00:00+01:00"
    ]


def test_schedules_compare_by_expression() -> None:
    assert CronSchedule.parse("0 3 * * *") == CronSchedule("0 3 * * *")
    assert len({CronSchedule.parse("@daily"), CronSchedule.parse("@daily")}) == 1
    assert CronSchedule.parse("@daily").upcoming(datetime.now(UTC), BERLIN, 0) == []


def test_jobs_with_one_expression_share_one_parsed_schedule() -> None:
    first = CronSchedule.parse("7 * * * *")
    assert CronSchedule.parse("7 * * * *") is first
    assert CronSchedule.parse("7 3 * * *") is not first
    tracemalloc.start()
    try:
        schedules = [CronSchedule.parse("7 * * * *") for _ in range(10_000)]
        held = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    # The list's own 80 KB; a schedule apiece would be ~12 MB.
    assert held < 200_000, held
    assert len(schedules) == 10_000


def test_bad_expressions_still_fail_every_time() -> None:
    for _ in range(2):
        with pytest.raises(ValueError, match="minute field"):
            CronSchedule.parse("61 * * * *")
    with pytest.raises(ValueError, match="must be a string"):
        CronSchedule.parse(["0 * * * *"])  # type: ignore[arg-type]


def test_a_shared_schedule_answers_every_caller_on_its_own() -> None:
    shared = CronSchedule.parse("*/20 2 * * *")
    starts = [
        datetime(2026, 10, 25, 1, 59, tzinfo=BERLIN) + timedelta(minutes=7 * i) for i in range(40)
    ]
    calls = [(moment, tz) for moment in starts for tz in (BERLIN, NEW_YORK)]
    # Each answer from a schedule nobody else used, in the zone's own repeated hour or not.
    expected = [CronSchedule("*/20 2 * * *").next_after(m, tz).isoformat() for m, tz in calls]

    def answer(call: tuple[datetime, ZoneInfo]) -> str:
        return shared.next_after(*call).isoformat()

    assert [answer(call) for call in calls] == expected  # interleaved zones and moments
    with ThreadPoolExecutor(8) as pool:
        for _ in range(5):
            assert list(pool.map(answer, calls)) == expected


# --- properties -------------------------------------------------------------------------

# Each choice carries its values so the oracle below does not lean on the code under test.
MINUTES = [
    ("*", set(range(60))),
    ("*/15", {0, 15, 30, 45}),
    ("*/7", set(range(0, 60, 7))),
    ("0", {0}),
    ("30", {30}),
    ("0,30", {0, 30}),
    ("15-45/15", {15, 30, 45}),
    ("59", {59}),
]
HOURS = [
    ("*", set(range(24))),
    ("*/2", set(range(0, 24, 2))),
    ("0", {0}),
    ("1", {1}),
    ("2", {2}),
    ("3", {3}),
    ("1-3", {1, 2, 3}),
    ("2,3", {2, 3}),
    ("0-2", {0, 1, 2}),
]
DAYS = [("*", None), ("*", None), ("1", {1}), ("25-31", set(range(25, 32))), ("*/2", None)]
MONTHS = [("*", set(range(1, 13))), ("3,10,11", {3, 10, 11}), ("*/3", {1, 4, 7, 10})]
WEEKDAYS = [("*", None), ("*", None), ("0", {0}), ("mon-fri", {1, 2, 3, 4, 5}), ("sat,sun", {0, 6})]
SECONDS = ["0", "*/20", "45"]

ALL_2026 = (datetime(2026, 1, 1, tzinfo=UTC), datetime(2027, 1, 1, tzinfo=UTC))


# expression, minutes, hours, days of month, months, weekdays (None: unrestricted)
Spec = tuple[str, set[int], set[int], set[int] | None, set[int], set[int] | None]


@st.composite
def expressions(draw: st.DrawFn) -> Spec:
    minute = draw(st.sampled_from(MINUTES))
    hour = draw(st.sampled_from(HOURS))
    day = draw(st.sampled_from(DAYS))
    month = draw(st.sampled_from(MONTHS))
    weekday = draw(st.sampled_from(WEEKDAYS))
    days = day[1] if day[0] != "*/2" else set(range(1, 32, 2))
    expr = " ".join(f[0] for f in (minute, hour, day, month, weekday))
    return expr, minute[1], hour[1], days, month[1], weekday[1]


@st.composite
def starts(draw: st.DrawFn) -> tuple[ZoneInfo, datetime]:
    """A zone and an instant: anywhere in 2026, or often within a day of a DST change."""
    tz = draw(st.sampled_from([BERLIN, NEW_YORK]))
    if draw(st.booleans()):
        moment = draw(
            st.datetimes(ALL_2026[0].replace(tzinfo=None), ALL_2026[1].replace(tzinfo=None))
        )
        return tz, moment.replace(tzinfo=UTC)
    change = draw(st.sampled_from(CHANGES[tz])).replace(tzinfo=tz)
    offset = draw(st.integers(-36 * 3600, 36 * 3600))
    return tz, (
        change.astimezone(UTC)
        + timedelta(seconds=offset, microseconds=draw(st.integers(0, 999_999)))
    )


def slot_key(fire: datetime) -> tuple[int, ...]:
    return (fire.year, fire.month, fire.day, fire.hour, fire.minute, fire.second)


FAST = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FAST
@given(expressions(), st.sampled_from([None, *SECONDS]), starts())
def test_fires_strictly_increase_and_fixed_slots_never_repeat(
    spec: Spec,
    seconds: str | None,
    start: tuple[ZoneInfo, datetime],
) -> None:
    expr = spec[0] if seconds is None else f"{seconds} {spec[0]}"
    tz, moment = start
    schedule = CronSchedule.parse(expr)
    times = schedule.upcoming(moment, tz, 20)
    stamps = [t.timestamp() for t in times]
    assert stamps[0] > moment.timestamp()
    assert all(a < b for a, b in itertools.pairwise(stamps))
    assert all(t.tzinfo is tz for t in times)
    if not schedule.wildcard:
        keys = [slot_key(t) for t in times]
        assert len(set(keys)) == len(keys), f"{expr} repeated a wall-clock slot: {times}"
    # Asking from just before a fire finds that fire (UTC arithmetic: fold stays intact).
    just_before = times[3].astimezone(UTC) - timedelta(microseconds=1)
    assert schedule.next_after(just_before, tz).timestamp() == stamps[3]


def oracle(spec: Spec, tz: ZoneInfo, day: datetime) -> list[float]:
    """Every fire in the three local days around ``day``, by brute force over each minute."""
    expr, minutes, hours, days, months, weekdays = spec
    wildcard = expr.split()[0].startswith("*") or expr.split()[1].startswith("*")
    found: set[float] = set()
    wall = day - timedelta(days=1)
    while wall < day + timedelta(days=2):
        weekday = wall.isoweekday() % 7
        if days is not None and weekdays is not None:
            day_ok = wall.day in days or weekday in weekdays
        else:
            day_ok = (days is None or wall.day in days) and (
                weekdays is None or weekday in weekdays
            )
        if wall.minute in minutes and wall.hour in hours and wall.month in months and day_ok:
            first = wall.replace(tzinfo=tz, fold=0)
            second = wall.replace(tzinfo=tz, fold=1)
            exists = first.astimezone(UTC).astimezone(tz).replace(tzinfo=None) == wall
            if exists:
                found.add(first.timestamp())
                if wildcard:
                    found.add(second.timestamp())  # same instant unless the hour repeats
            elif not wildcard:
                later = wall
                while (
                    later.replace(tzinfo=tz).astimezone(UTC).astimezone(tz).replace(tzinfo=None)
                    != later
                ):
                    later += timedelta(minutes=1)
                found.add(later.replace(tzinfo=tz).timestamp())
        wall += timedelta(minutes=1)
    return sorted(found)


@settings(max_examples=60, deadline=None)
@given(expressions(), st.sampled_from([BERLIN, NEW_YORK]), st.integers(0, 1))
def test_fires_match_a_brute_force_oracle_around_dst_changes(
    spec: Spec, tz: ZoneInfo, which: int
) -> None:
    day = CHANGES[tz][which]
    expected = oracle(spec, tz, day)
    window_start = (day - timedelta(days=1)).replace(tzinfo=tz).timestamp()
    window_end = (day + timedelta(days=2)).replace(tzinfo=tz).timestamp()
    schedule = CronSchedule.parse(spec[0])
    got: list[float] = []
    moment = datetime.fromtimestamp(window_start - 1, UTC)
    while len(got) <= len(expected):  # bounded even if next_after stopped advancing
        moment = schedule.next_after(moment, tz)
        if moment.timestamp() >= window_end:
            break
        got.append(moment.timestamp())
    assert got == expected
    # Asking from anywhere in the change's early hours, both passes of a repeated hour
    # included, finds the first fire after that instant.
    change_night = day.replace(tzinfo=tz).timestamp()
    for step in range(0, 6 * 3600, 7 * 60 + 13):
        asked = change_night + step
        want = next((e for e in expected if e > asked), None)
        answer = schedule.next_after(datetime.fromtimestamp(asked, UTC), tz).timestamp()
        assert answer == want or (want is None and answer >= window_end)
