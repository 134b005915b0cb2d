"""Quotas: sliding-hour limits per job and globally, on a fake clock and real history.

Scopes with a limit count exact start times; scopes without one count per clock minute,
so their starts leave the count when their minute's end is an hour old.
"""

from __future__ import annotations

import tracemalloc
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from watchkeeper.core.history import HistoryWriter, RunRecord
from watchkeeper.core.quota import WINDOW, Quota, Refusal, ScopeUsage

# T + 3600 crosses 2**31 and rounds, so (T + 3600) - 3600 != T: a slot must still free at
# exactly the next_free reported, whichever way the window's edge is computed.
T = 2_147_481_848.0005
T_MINUTE_END = 2_147_481_900.0  # the end of the clock minute T falls in


def test_job_limit_refuses_the_fourth_run_until_the_first_slides_out() -> None:
    assert (T + 3600) - 3600 != T
    quota = Quota(0, {"triage": 3})
    for offset in (0, 10, 20):
        assert quota.check("triage", T + offset) is None
        quota.record("triage", T + offset)

    refusal = quota.check("triage", T + 30)
    assert refusal == Refusal(scope="triage", limit=3, next_free=T + 3600)
    assert quota.check("other", T + 30) is None  # a job limit binds only its own job

    assert quota.check("triage", T + 3600 - 0.001) is not None
    assert quota.check("triage", T + 3600) is None
    quota.record("triage", T + 3600)
    # Full again; now the second start is the oldest.
    assert quota.check("triage", T + 3600) == Refusal("triage", 3, T + 10 + 3600)


def test_global_limit_counts_every_job() -> None:
    quota = Quota(4, {})
    for offset, job in enumerate(["a", "b", "c", "a"]):
        assert quota.check(job, T + offset) is None
        quota.record(job, T + offset)

    assert quota.check("d", T + 5) == Refusal("global", 4, T + 3600)
    assert quota.check("d", T + 3600) is None


def test_when_both_scopes_are_full_the_one_that_frees_last_refuses() -> None:
    quota = Quota(3, {"a": 2})
    quota.record("b", T)
    quota.record("a", T + 100)
    quota.record("a", T + 200)
    # Global frees at T+3600, job a only at T+3700: a cannot start before then.
    assert quota.check("a", T + 300) == Refusal("a", 2, T + 100 + 3600)
    assert quota.check("b", T + 300) == Refusal("global", 3, T + 3600)

    tied = Quota(2, {"a": 2})
    tied.record("a", T)
    tied.record("a", T + 100)
    assert tied.check("a", T + 300) == Refusal("a", 2, T + 3600)  # the narrower scope


def test_manual_runs_pass_a_full_quota_but_count() -> None:
    quota = Quota(3, {"triage": 2})
    quota.record("triage", T)
    quota.record("triage", T + 1)
    assert quota.check("triage", T + 2) is not None
    assert quota.check("triage", T + 2, manual=True) is None
    quota.record("triage", T + 2)
    assert quota.check("triage", T + 3, manual=True) is None
    quota.record("triage", T + 3)

    assert quota.runs_last_hour(T + 4) == 4
    assert quota.check("other", T + 4) == Refusal("global", 3, T + 1 + 3600)
    # Four starts against a limit of two: three must leave before a slot frees.
    assert quota.check("triage", T + 4) == Refusal("triage", 2, T + 2 + 3600)
    assert quota.check("triage", T + 2 + 3600) is None


def _run(run_id: str, job: str, started: datetime, status: str) -> RunRecord:
    return RunRecord(
        id=run_id,
        job=job,
        project="vault",
        started_at=started,
        status=status,
        trigger="manual" if status == "failure" else "schedule",
        host="box",
    )


def test_rebuild_from_history_survives_a_restart(tmp_path: Path) -> None:
    directory = tmp_path / "Logs" / "history"
    now_dt = datetime(2025, 3, 14, 12, 0, tzinfo=UTC)
    now = now_dt.timestamp()
    writer = HistoryWriter(directory)

    def ran(run_id: str, job: str, minutes_ago: float, final: str | None, took: float = 30.0):
        started = now_dt - timedelta(minutes=minutes_ago)
        running = _run(run_id, job, started, "running")
        writer.append(running)
        if final is not None:
            end = started + timedelta(seconds=took)
            writer.append(replace(running, status=final, completed_at=end, duration_ms=1))

    ran("old", "triage", 61, "success", took=300)  # ended inside the hour, started before
    ran("r1", "triage", 50, "success")
    ran("r2", "triage", 30, "failure")
    ran("r3", "triage", 5, None)  # still running: it started, so it counts
    ran("s1", "triage", 4, "skipped", took=0)  # refused by the quota: never started
    ran("r4", "report", 20, "timeout")
    writer.close()
    assert (directory / "2025-03-14.jsonl").exists()

    quota = Quota.from_history(directory, 0, {"triage": 3, "report": 5}, now)

    assert quota.usage(now) == [
        # No global limit: counted, but no slot to wait for.
        ScopeUsage("global", 4, 0, None),
        ScopeUsage("report", 1, 5, now - 20 * 60 + WINDOW),
        ScopeUsage("triage", 3, 3, now - 50 * 60 + WINDOW),
    ]
    assert quota.check("triage", now) == Refusal("triage", 3, now + 10 * 60)
    assert quota.check("report", now) is None


def test_rebuild_reads_across_midnight(tmp_path: Path) -> None:
    directory = tmp_path / "history"
    now_dt = datetime(2025, 3, 15, 0, 20, tzinfo=UTC)
    writer = HistoryWriter(directory)
    started = now_dt - timedelta(minutes=40)  # 23:40 yesterday
    writer.append(_run("late", "triage", started, "running"))
    writer.append(_run("early", "triage", now_dt - timedelta(minutes=10), "running"))
    writer.close()
    assert sorted(path.name for path in directory.iterdir()) == [
        "2025-03-14.jsonl",
        "2025-03-15.jsonl",
    ]

    quota = Quota.from_history(directory, 2, {}, now_dt.timestamp())

    assert quota.check("x", now_dt.timestamp()) == Refusal(
        "global", 2, started.timestamp() + WINDOW
    )


def test_rebuild_replaces_the_window_and_drops_expired_starts() -> None:
    quota = Quota(0, {"a": 5})
    quota.record("a", T)
    # T - 3600 is an hour old, but its minute is not over: still dropped, by its exact time.
    quota.rebuild(
        [("a", T - 3600), ("a", T - 3599), ("b", T + 10), ("a", T - 10), ("c", T - 4000)], T
    )
    assert quota._jobs.keys() == {"a", "b"}  # expired starts are not even stored
    assert quota.usage(T) == [
        ScopeUsage("global", 3, 0, None),
        ScopeUsage("a", 2, 5, T - 3599 + WINDOW),
        ScopeUsage("b", 1, 0, None),
    ]


def test_set_limits_keeps_the_recorded_starts() -> None:
    quota = Quota(0, {"a": 5})
    for offset in (0, 1, 2):
        quota.record("a", T + offset)
    quota.set_limits(0, {"a": 2})
    assert quota.check("a", T + 3) == Refusal("a", 2, T + 1 + 3600)
    quota.set_limits(3, {})
    # The global scope had no limit, so only its minutes were kept: each start is taken at
    # its minute's end, later than it really was, so the new limit is never exceeded.
    assert quota.check("a", T + 3) == Refusal("global", 3, T_MINUTE_END + 3600)
    assert quota.check("a", T + 3600) is not None
    quota.set_limits(0, {})
    assert quota.check("a", T + 3) is None
    assert quota.usage(T + 3) == [ScopeUsage("global", 3, 0, None), ScopeUsage("a", 3, 0, None)]
    quota.set_limits(3, {})
    assert quota.check("a", T_MINUTE_END + 3600) is None


def test_a_limit_set_on_a_reload_counts_the_starts_before_it_and_exactly_after() -> None:
    quota = Quota(0, {})
    for offset in (0, 20, 40, 70):  # three in T's minute, one in the next
        quota.record("a", T + offset)
    assert quota.usage(T + 75)[1] == ScopeUsage("a", 4, 0, None)

    quota.set_limits(0, {"a": 4})
    assert quota.check("a", T + 80) == Refusal("a", 4, T_MINUTE_END + 3600)
    assert quota.check("b", T + 80) is None  # a job limit binds only its own job

    quota.set_limits(0, {"a": 5})
    assert quota.check("a", T + 80) is None
    quota.record("a", T + 80)  # from here on, an exact time
    assert quota.check("a", T + 81) == Refusal("a", 5, T_MINUTE_END + 3600)
    # T's minute has left; then the start at T + 80, before T + 70 (read as its minute's end).
    assert quota.usage(T_MINUTE_END + 3600)[1] == ScopeUsage("a", 2, 5, T + 80 + 3600)
    assert quota.usage(T + 80 + 3600)[1] == ScopeUsage("a", 1, 5, T_MINUTE_END + 60 + 3600)
    assert quota.usage(T_MINUTE_END + 60 + 3600)[1] == ScopeUsage("a", 0, 5, None)


def test_zero_limits_mean_none() -> None:
    quota = Quota(0, {"a": 0, "b": -1})
    assert Quota(-1, {}).check("a", T) is None
    for offset in range(500):
        assert quota.check("a", T + offset) is None
        quota.record("a", T + offset)
    assert quota.runs_last_hour(T + 500) == 500


def test_backwards_clock_step_keeps_future_starts_counted() -> None:
    quota = Quota(10, {"a": 3})
    for offset in (100, 200, 300):
        quota.record("a", T + offset)

    back = T  # the clock steps back 300 s: every start is now in the "future"
    refusal = quota.check("a", back)
    assert refusal == Refusal("a", 3, T + 100 + 3600)
    assert refusal.message(back) == "quota: job a max_per_hour 3 reached; next slot frees in 1h01m"
    assert quota.runs_last_hour(back) == 3
    assert quota.runs_per_minute(back) == [0] * 59 + [3]

    quota.record("a", back + 50)  # a manual run while the clock is behind
    usage = quota.usage(back + 50)
    assert usage[1] == ScopeUsage("a", 4, 3, back + 50 + 3600)  # sorted in as the oldest
    assert all(scope.used >= 0 and scope.next_free > back for scope in usage)

    # Each start leaves an hour after its own time, whatever order it was recorded in.
    assert quota.usage(back + 50 + 3600)[1].used == 3
    assert quota.check("a", back + 50 + 3600) == Refusal("a", 3, T + 100 + 3600)
    assert quota.check("a", T + 100 + 3600) is None
    assert quota.usage(T + 300 + 3600) == [
        ScopeUsage("global", 0, 10, None),
        ScopeUsage("a", 0, 3, None),
    ]


def test_backwards_clock_step_in_scopes_counted_per_minute() -> None:
    quota = Quota(0, {})
    for offset in (100, 200, 300):  # minutes ending at T_MINUTE_END + 120, 180, 300
        quota.record("a", T + offset)
    back = T
    assert quota.runs_last_hour(back) == 3
    assert quota.runs_per_minute(back) == [0] * 59 + [3]

    quota.record("a", back + 50)  # T's own minute, sorted in as the oldest
    quota.record("a", back + 110)  # the minute already counting T + 100
    assert quota.usage(back + 110)[1] == ScopeUsage("a", 5, 0, None)
    # Each minute leaves an hour after its own end, whatever order it was recorded in.
    assert quota.runs_last_hour(T_MINUTE_END + 3600) == 4
    assert quota.runs_last_hour(T_MINUTE_END + 120 + 3600) == 2
    assert quota.runs_last_hour(T_MINUTE_END + 180 + 3600) == 1
    assert quota.usage(T_MINUTE_END + 300 + 3600) == [ScopeUsage("global", 0, 0, None)]


def test_usage_and_runs_per_minute_on_a_known_window() -> None:
    now = 1_700_000_000.0
    quota = Quota(10, {"a": 3, "idle": 5})
    quota.rebuild(
        [
            ("a", now - 3599.5),  # first minute of the window
            ("a", now - 1800),  # minute 30
            ("b", now - 3540.5),  # first minute, just
            ("b", now - 3540),  # second minute, just
            ("b", now - 59),  # last minute
            ("b", now - 0.5),  # last minute
            ("c", now - 3600),  # exactly an hour ago: already out
            ("c", now - 7200),
        ],
        now,
    )

    assert quota.usage(now) == [
        ScopeUsage("global", 6, 10, now + 0.5),
        ScopeUsage("a", 2, 3, now + 0.5),
        ScopeUsage("b", 4, 0, None),  # no limit: no slot to wait for
        ScopeUsage("idle", 0, 5, None),
    ]
    assert quota.runs_last_hour(now) == 6
    assert quota.runs_per_minute(now) == [2, 1] + [0] * 28 + [1] + [0] * 28 + [2]

    later = now + 30  # the buckets slide with the clock
    # a's first start has left; c, without a limit and without starts, is not listed at all.
    assert [(scope.scope, scope.used) for scope in quota.usage(later)] == [
        ("global", 5),
        ("a", 1),
        ("b", 4),
        ("idle", 0),
    ]
    assert quota.runs_per_minute(later) == [2] + [0] * 28 + [1] + [0] * 28 + [1, 1]
    assert quota.runs_per_minute(now + WINDOW) == [0] * 60


def test_memory_stays_bounded_by_the_window() -> None:
    quota = Quota(0, {})
    for second in range(3 * 3600):
        quota.record(f"job{second % 7}", T + second)
    now = T + 3 * 3600
    # Without limits, starts are counted per minute: the window opens 8 s into a minute,
    # whose starts older than the hour (at -3608 s to -3600 s) still count.
    assert quota.runs_last_hour(now) == 3599 + 9
    assert sum(scope.used for scope in quota.usage(now)[1:]) == 3599 + 9
    # A job that stopped running is forgotten once its starts have left the window.
    quota.record("gone", now)
    assert "gone" not in [scope.scope for scope in quota.usage(now + WINDOW + 60)]
    assert "gone" not in quota._jobs


def test_scopes_without_a_limit_hold_minutes_not_starts() -> None:
    hour = 1_700_000_040.0  # a minute's end
    per_minute = 1_000  # 60,000 starts in the hour; exact times would take ~4 MB
    jobs = [f"job{i}" for i in range(7)]

    def record_hour(quota: Quota) -> int:
        tracemalloc.start()
        try:
            for i in range(60 * per_minute):
                minute, nth = divmod(i, per_minute)
                # The last start of each minute falls on its end, which still belongs to it.
                quota.record(jobs[i % 7], hour + minute * 60 + (nth + 1) * 60 / per_minute)
            return tracemalloc.get_traced_memory()[0]
        finally:
            tracemalloc.stop()

    unlimited = Quota(0, {})
    held = record_hour(unlimited)
    assert held < 100_000, held  # 8 scopes of 60 buckets
    limited = Quota(1_000_000, {})
    assert record_hour(limited) > 20 * held  # a limit needs every start: it keeps them

    assert unlimited.runs_last_hour(hour + 3600) == 60_000
    assert unlimited.runs_per_minute(hour + 3600) == [per_minute] * 60
    used = {scope.scope: scope.used for scope in unlimited.usage(hour + 3600)}
    assert used == {"global": 60_000} | {
        job: 60_000 // 7 + (i < 60_000 % 7) for i, job in enumerate(jobs)
    }
    # Half of the first minute has left the window, but only the exact count knows it.
    assert limited.runs_last_hour(hour + 3630) == 60_000 - per_minute // 2
    assert unlimited.runs_last_hour(hour + 3630) == 60_000
    # Each minute leaves whole, an hour after it ended.
    assert unlimited.runs_last_hour(hour + 3660 - 0.001) == 60_000
    assert unlimited.runs_last_hour(hour + 3660) == 60_000 - per_minute
    assert unlimited.runs_last_hour(hour + 3600 + 30 * 60) == 30_000
    assert unlimited.runs_last_hour(hour + 7200) == 0


def test_refusal_messages() -> None:
    now = 1_000.0
    job = Refusal("triage", 3, now + 41 * 60 + 12)
    assert job.message(now) == "quota: job triage max_per_hour 3 reached; next slot frees in 41m12s"
    total = Refusal("global", 60, now + 90)
    assert total.message(now) == "quota: max_runs_per_hour 60 reached; next slot frees in 1m30s"
    assert total.message(now + 200) == (
        "quota: max_runs_per_hour 60 reached; next slot frees in 0ms"
    )
