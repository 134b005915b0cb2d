"""`jitter` (each scheduled start put off by a random delay up to it) and a job's own
`timezone` for its cron, on a ManualClock with a seeded random source; and what
`describe`, `jobs` and `validate` say of them through the real CLI."""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from conftest import finals, finish, run_cli, started_keeper, until

from watchkeeper.core.config import parse_config
from watchkeeper.core.cron import CronSchedule
from watchkeeper.core.seams import ManualClock
from watchkeeper.core.slots import Slots
from watchkeeper.core.triggers import CronTrigger, EverySchedule, Schedule, schedules_for

BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")


@dataclass
class Job:
    schedules: list[Schedule]
    next_due: list[float] = field(default_factory=list)


def laid_out(clock: ManualClock, jobs: dict[str, Job], seed: int = 7) -> Slots:
    slots = Slots(clock, random.Random(seed))
    for name, job in jobs.items():
        slots.first_dues(job)
        slots.lay_out(name, job)
    return slots


def walk(clock: ManualClock, slots: Slots, jobs: dict[str, Job], seconds: float, step: float):
    """Every slot fired while the clock moves `step` at a time: (slot, wall, mono) each."""
    fired = []
    for _ in range(round(seconds / step)):
        clock.advance(step)
        fired += [(slot, clock.time(), clock.monotonic()) for slot in slots.due(jobs, slots.now())]
    return fired


def test_jitter_puts_each_interval_slot_off_by_up_to_it_never_before_and_once() -> None:
    clock = ManualClock()
    jobs = {"tick": Job([EverySchedule(10.0, "mono", 4.0)])}
    slots = laid_out(clock, jobs)
    start, step = clock.monotonic(), 0.01
    fired = walk(clock, slots, jobs, 1000.0, step)
    dues = [slot.due for slot, _, _ in fired]
    assert dues == [start + 10 * n for n in range(1, 100)]  # each slot once, none missed
    delays = [mono - slot.due for slot, _, mono in fired]
    assert all(0 <= delay <= 4 + step for delay in delays)
    assert min(delays) < 0.5 and max(delays) > 3.5  # spread over the whole range
    for slot, _, mono in fired:
        assert slot.due <= slot.due_mono <= mono  # the run is due at the delayed start
    # Seeded: the same delays again.
    clock = ManualClock()
    again = {"tick": Job([EverySchedule(10.0, "mono", 4.0)])}
    replay = walk(clock, laid_out(clock, again), again, 1000.0, step)
    assert [mono - slot.due for slot, _, mono in replay] == delays


def test_jitter_on_a_cron_slot_starts_within_its_bound_after_the_minute() -> None:
    clock = ManualClock(wall=datetime(2026, 3, 2, 10, 0, tzinfo=BERLIN).timestamp())
    cron = CronTrigger(CronSchedule.parse("* * * * *"), BERLIN, "wall", 30.0)
    jobs = {"minutely": Job([cron])}
    slots = laid_out(clock, jobs, seed=3)
    start = clock.time()
    fired = walk(clock, slots, jobs, 635.0, 0.05)
    assert [slot.due for slot, _, _ in fired] == [start + 60 * n for n in range(1, 11)]
    for slot, wall, _ in fired:
        assert slot.due <= wall <= slot.due + 30 + 0.05
        assert slot.due_wall == pytest.approx(wall, abs=0.05)
    # While a jittered slot waits, the loop sleeps until its start, not its slot.
    assert slots.sleep_for() > 0


def test_without_jitter_a_slot_fires_at_its_instant_and_draws_nothing() -> None:
    clock = ManualClock()
    jobs = {"tick": Job([EverySchedule(10.0)])}
    rng = random.Random(1)
    slots = Slots(clock, rng)
    slots.first_dues(jobs["tick"])
    slots.lay_out("tick", jobs["tick"])
    state = rng.getstate()
    clock.advance(10.0)
    [slot] = slots.due(jobs, slots.now())
    assert slot.due_mono == slot.due == clock.monotonic()
    assert rng.getstate() == state and not slots.slot_of


def config_with(job: str, keeper_zone: str = "Europe/Berlin"):
    text = f'[keeper]\ntimezone = "{keeper_zone}"\n[jobs.a]\ncommand = "true"\n{job}\n'
    return parse_config(text, Path("/nonexistent/watchkeeper.toml"))


def test_a_jobs_own_timezone_sets_its_cron_across_both_zones_dst_changes() -> None:
    # New York moves its clocks on 8 March 2026, Berlin on 29 March: 09:00 in New York is
    # 15:00 in Berlin, then 14:00 for three weeks, then 15:00 again.
    config = config_with('cron = "0 9 * * *"\ntimezone = "America/New_York"')
    job = config.jobs["a"]
    assert job.timezone == "America/New_York"
    local = config_with('cron = "0 9 * * *"')
    clock = ManualClock(wall=datetime(2026, 3, 5, 12, 0, tzinfo=BERLIN).timestamp())
    jobs = {
        "ny": Job(schedules_for(job, config.keeper.tz)),
        "berlin": Job(schedules_for(local.jobs["a"], local.keeper.tz)),
    }
    slots = laid_out(clock, jobs)
    fired = walk(clock, slots, jobs, 30 * 86400.0, 60.0)
    ny = [datetime.fromtimestamp(s.due, BERLIN) for s, _, _ in fired if s.job == "ny"]
    assert [(m.day, m.hour) for m in ny][:4] == [(5, 15), (6, 15), (7, 15), (8, 14)]
    assert [(m.day, m.hour) for m in ny if m.day in (28, 29, 30)] == [(28, 14), (29, 15), (30, 15)]
    assert {datetime.fromtimestamp(s.due, NEW_YORK).hour for s, _, _ in fired if s.job == "ny"} == {
        9
    }
    berlin = [datetime.fromtimestamp(s.due, BERLIN) for s, _, _ in fired if s.job == "berlin"]
    assert {m.hour for m in berlin} == {9} and len(berlin) == len(ny) == 30


def test_describe_and_jobs_show_a_jobs_zone_and_jitter(make_vault) -> None:
    vault = make_vault(
        """
        [keeper]
        timezone = "Europe/Berlin"

        [jobs.report]
        command = "true"
        cron = "0 9 * * *"
        timezone = "America/New_York"
        jitter = "30s"
        """
    )
    described = run_cli("describe", "report", "--vault", str(vault))
    assert described.returncode == 0, described.stderr
    out = described.stdout
    assert "cron 0 9 * * * (America/New_York); jitter 30s" in out
    assert "timezone" in out and "up to 30s after each slot" in out
    times = [line for line in out.splitlines() if "(cron)" in line]
    assert times and all(" 09:00:00 E" in line for line in times)  # EST or EDT
    as_json = run_cli("describe", "report", "--json", "--vault", str(vault))
    assert '"timezone": "America/New_York"' in as_json.stdout
    listed = run_cli("jobs", "--vault", str(vault))
    assert listed.returncode == 0, listed.stderr
    assert "(America/New_York)" in listed.stdout


@pytest.mark.parametrize(
    ("line", "key", "message"),
    [
        ('timezone = "Mars/Olympus"', "jobs.a.timezone", "unknown IANA time zone"),
        ('jitter = "2d"', "jobs.a.jitter", "expected a duration from 0s to 1d"),
        ('jitter = "-1s"', "jobs.a.jitter", ""),
    ],
)
def test_validate_refuses_a_bad_zone_or_jitter(make_vault, line: str, key: str, message: str):
    vault = make_vault(f'[jobs.a]\ncommand = "true"\nevery = "1m"\n{line}\n')
    done = run_cli("validate", "--vault", str(vault))
    assert done.returncode == 2
    assert f"watchkeeper.toml:4: {key}: {message}" in done.stderr


async def test_a_keeper_runs_a_jittered_job_once_a_slot_and_never_before_it(make_vault) -> None:
    vault = make_vault(
        """
        [jobs.tick]
        command = "true"
        every = "400ms"
        jitter = "100ms"
        """
    )
    keeper = await started_keeper(vault)
    first = keeper.slots.next_wall(keeper.jobs["tick"])
    assert first is not None
    serving = asyncio.create_task(keeper.serve())
    await until(lambda: len(finals(vault, "tick")) >= 4)
    await finish(keeper, serving)
    starts = sorted(
        datetime.fromisoformat(record["startedAt"]).timestamp() for record in finals(vault, "tick")
    )
    # Slot n is at first + 0.4 n; its run starts up to 100 ms after it (and a busy box's
    # lateness), never before, and no slot has two runs.
    slots = [int((start - first + 0.002) // 0.4) for start in starts]
    assert slots == sorted(set(slots)) and slots[0] == 0
    for n, start in zip(slots, starts, strict=True):
        assert first + 0.4 * n - 0.002 <= start <= first + 0.4 * n + 0.1 + 0.25
