"""Slots, admission, chains, retries' backoff and quota windows on a ManualClock: pure,
no loop, no processes; each test takes milliseconds. The real-time end-to-end tests of
the same behaviour are in test_keeper.py and test_flow.py."""

from __future__ import annotations

import random
from collections import OrderedDict
from dataclasses import dataclass, field, replace
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from watchkeeper.core import tuning
from watchkeeper.core.admission import decide
from watchkeeper.core.chains import wave_complete
from watchkeeper.core.config import JobConfig
from watchkeeper.core.cron import CronSchedule
from watchkeeper.core.quota import WINDOW, Quota
from watchkeeper.core.run_end import backoff
from watchkeeper.core.seams import ManualClock
from watchkeeper.core.slots import Slot, Slots
from watchkeeper.core.triggers import CronTrigger, EverySchedule, Schedule

BERLIN = ZoneInfo("Europe/Berlin")


@dataclass
class Job:
    schedules: list[Schedule]
    next_due: list[float] = field(default_factory=list)


def laid_out(clock: ManualClock, **jobs: Job) -> Slots:
    slots = Slots(clock)
    for name, job in jobs.items():
        slots.first_dues(job)
        slots.lay_out(name, job)
    return slots


def fire(slots: Slots, jobs: dict[str, Job]) -> list[Slot]:
    return list(slots.due(jobs, slots.now()))


def wall(text: str, tz: ZoneInfo = BERLIN) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=tz).timestamp()


def cron(expr: str, tz: ZoneInfo = BERLIN) -> CronTrigger:
    return CronTrigger(CronSchedule.parse(expr), tz)


def test_an_interval_fires_at_its_slot_and_a_late_loop_fires_once_keeping_the_phase() -> None:
    clock = ManualClock()
    jobs = {"tick": Job([EverySchedule(10.0)])}
    slots = laid_out(clock, **jobs)
    start = clock.monotonic()
    assert slots.sleep_for() == pytest.approx(10.0)
    clock.advance(9.999)
    assert fire(slots, jobs) == []
    clock.advance(0.001)
    [slot] = fire(slots, jobs)
    assert (slot.job, slot.clock, slot.due_mono) == ("tick", "mono", start + 10)
    assert slot.due_wall == pytest.approx(clock.time())
    clock.advance(35)  # three slots pass while the loop is held up: one run, not three
    assert [s.due for s in fire(slots, jobs)] == [start + 20]
    assert jobs["tick"].next_due == [start + 50]  # the series keeps its phase
    assert slots.sleep_for() == pytest.approx(5.0)


def test_a_wall_clock_step_neither_fires_intervals_nor_bursts_cron() -> None:
    clock = ManualClock(wall=wall("2026-03-02T10:00:00"))
    jobs = {"tick": Job([EverySchedule(60.0)]), "hourly": Job([cron("0 * * * *")])}
    slots = laid_out(clock, **jobs)
    clock.step(5 * 3600)  # the wall clock jumps five hours ahead
    fired = fire(slots, jobs)
    assert [s.job for s in fired] == ["hourly"]  # once, for five passed slots
    assert fired[0].due == wall("2026-03-02T11:00:00")
    assert jobs["hourly"].next_due == [wall("2026-03-02T16:00:00")]
    assert slots.sleep_for() == pytest.approx(60.0)  # the interval still counts from start


def test_a_long_wall_sleep_is_rechecked_so_a_clock_step_costs_little() -> None:
    clock = ManualClock(wall=wall("2026-03-02T10:00:00"))
    jobs = {"daily": Job([cron("0 9 * * *")])}
    slots = laid_out(clock, **jobs)
    assert slots.sleep_for() == tuning.MAX_WALL_SLEEP


def test_cron_follows_cronie_through_spring_forward() -> None:
    # 02:30 does not exist on 2026-03-29 in Berlin: the slot runs once, right after the gap.
    clock = ManualClock(wall=wall("2026-03-28T12:00:00"))
    jobs = {"night": Job([cron("30 2 * * *")])}
    slots = laid_out(clock, **jobs)
    dues = []
    for _ in range(3):
        clock.step(jobs["night"].next_due[0] - clock.time())
        dues += [datetime.fromtimestamp(s.due, BERLIN).isoformat() for s in fire(slots, jobs)]
    assert dues == [
        "2026-03-29T03:00:00+02:00",
        "2026-03-30T02:30:00+02:00",
        "2026-03-31T02:30:00+02:00",
    ]


def test_cron_runs_once_in_the_repeated_autumn_hour() -> None:
    clock = ManualClock(wall=wall("2026-10-24T12:00:00"))
    jobs = {"night": Job([cron("30 2 * * *")])}
    slots = laid_out(clock, **jobs)
    dues = []
    for _ in range(2):
        clock.step(jobs["night"].next_due[0] - clock.time())
        dues += [datetime.fromtimestamp(s.due, BERLIN).isoformat() for s in fire(slots, jobs)]
    # 02:30 comes twice on 2026-10-25 (+02:00, then +01:00): the first only.
    assert dues == ["2026-10-25T02:30:00+02:00", "2026-10-26T02:30:00+01:00"]


def test_catch_up_sees_a_slot_missed_while_no_keeper_ran() -> None:
    clock = ManualClock(wall=wall("2026-03-02T10:20:00"))
    job = Job([cron("0 * * * *")])
    slots = Slots(clock)
    assert slots.missed(job, wall("2026-03-02T09:30:00"))  # 10:00 passed meanwhile
    assert not slots.missed(job, wall("2026-03-02T10:05:00"))
    every = Job([EverySchedule(600.0)])
    assert slots.missed(every, clock.time() - 600)
    assert not slots.missed(every, clock.time() - 599)


def test_next_wall_puts_interval_slots_on_the_wall_clock() -> None:
    clock = ManualClock(wall=wall("2026-03-02T10:00:00"))
    job = Job([EverySchedule(90.0), cron("0 * * * *")])
    slots = laid_out(clock, job=job)
    assert slots.next_wall(job) == pytest.approx(clock.time() + 90)
    clock.step(-3600)  # the wall clock steps back: the interval's slot moves with it
    assert slots.next_wall(job) == pytest.approx(clock.time() + 90)


def test_a_reload_supersedes_the_slots_already_in_the_heap() -> None:
    clock = ManualClock()
    jobs = {"tick": Job([EverySchedule(10.0)])}
    slots = laid_out(clock, **jobs)
    jobs["tick"] = Job([EverySchedule(30.0)])  # changed by a reload: laid out afresh
    slots.first_dues(jobs["tick"])
    slots.lay_out("tick", jobs["tick"])
    clock.advance(10)
    assert fire(slots, jobs) == []  # the old 10 s slot is stale
    clock.advance(20)
    assert [s.job for s in fire(slots, jobs)] == ["tick"]


def test_ahead_readying_stops_once_the_slot_is_reached() -> None:
    # The loop readies a slot's runs before it and must stop by the slot's instant: what
    # is left is fired the usual way, after.
    clock = ManualClock()
    jobs = {f"j{i}": Job([EverySchedule(10.0)]) for i in range(5)}
    slots = laid_out(clock, **jobs)
    clock.advance(10 - tuning.FINE_WAIT)
    now = slots.now()
    head = slots.next_slot(now)
    assert head is not None and head[0] == pytest.approx(tuning.FINE_WAIT)
    ready_by = now["mono"] + head[0]
    readied = []
    for slot in slots.due(jobs, now, head[0], ready_by):
        readied.append(slot.job)
        if len(readied) == 2:
            clock.sleep_until(ready_by)  # readying took until the slot
    assert len(readied) == 2
    clock.advance(0.0)
    assert len(fire(slots, jobs)) == 3


def test_lead_grows_with_the_runs_due_at_the_next_instant() -> None:
    clock = ManualClock()
    jobs = {f"j{i}": Job([EverySchedule(10.0)]) for i in range(100)}
    slots = laid_out(clock, **jobs)
    assert slots.lead() == pytest.approx(tuning.FINE_WAIT + 100 * tuning.READY_EACH)


def test_admission_verdicts() -> None:
    def verdict(
        trigger: str = "schedule",
        overlap: str = "skip",
        in_flight: tuple[str, ...] = (),
        queued: tuple[str, ...] = (),
        running_total: int = 0,
        stopping: bool = False,
    ) -> tuple[str, str]:
        got = decide(trigger, overlap, in_flight, queued, running_total, 4, stopping)
        return got.action, got.reason

    assert verdict() == ("start", "")
    assert verdict(stopping=True) == ("skip", "keeper is stopping")
    assert verdict(in_flight=("r1",)) == ("skip", "run r1 still running (overlap = skip)")
    assert verdict(in_flight=("r1",), overlap="queue") == ("queue", "")
    assert verdict(in_flight=("r1",), overlap="queue", queued=("r2",)) == (
        "skip",
        "run r2 already queued (overlap = queue)",
    )
    assert verdict(in_flight=("r1",), overlap="allow", running_total=1) == ("start", "")
    assert verdict(in_flight=("r1",), trigger="file") == ("absorbed", "")
    assert verdict(running_total=4) == ("wait", "")


def test_a_wave_completes_once_every_after_job_succeeded_in_it() -> None:
    waves: OrderedDict[str, set[str]] = OrderedDict()
    assert not wave_complete(waves, ("a", "b"), "a", "w1")
    assert not wave_complete(waves, ("a", "b"), "b", "w2")  # another wave
    assert wave_complete(waves, ("a", "b"), "b", "w1")
    assert "w1" not in waves
    for index in range(tuning.WAVES_KEPT + 5):
        wave_complete(waves, ("a", "b"), "a", f"old{index}")
    assert len(waves) == tuning.WAVES_KEPT


def test_retry_backoff_is_full_jitter_under_the_cap() -> None:
    job = replace(JobConfig(name="j", command=("true",)), retry_delay=2.0, max_retry_delay=30.0)
    random.seed(3)
    for attempt, cap in [(1, 2.0), (2, 4.0), (3, 8.0), (4, 16.0), (5, 30.0), (9, 30.0)]:
        delays = [backoff(job, attempt) for _ in range(300)]
        assert all(0 <= delay <= cap for delay in delays)
        assert max(delays) > cap * 0.8  # spread over the whole range, not bunched


def test_a_quota_window_frees_a_start_an_hour_after_it() -> None:
    clock = ManualClock()
    quota = Quota(0, {"j": 2})
    for _ in range(2):
        assert quota.check("j", clock.time()) is None
        quota.record("j", clock.time())
        clock.advance(60)
    refusal = quota.check("j", clock.time())
    assert refusal is not None and refusal.next_free == pytest.approx(clock.time() - 120 + WINDOW)
    assert quota.check("j", clock.time(), manual=True) is None  # manual runs are never refused
    clock.advance(WINDOW - 120 - 0.001)
    assert quota.check("j", clock.time()) is not None
    clock.advance(0.001)
    assert quota.check("j", clock.time()) is None
