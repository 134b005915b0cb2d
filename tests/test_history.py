"""Execution history: the writer, the reverse readers and what they must survive."""

from __future__ import annotations

import heapq
import json
import math
import random
import shutil
import subprocess
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from watchkeeper.core.history import (
    FINAL_STATUSES,
    HistoryWriter,
    Query,
    RunRecord,
    elapsed_ms,
    open_runs,
    prune,
    recent,
    runs_since,
    stats,
)
from watchkeeper.core.history_scan import FIRST_BLOCK
from watchkeeper.core.logs import KeeperLog

T0 = datetime(2025, 3, 14, 12, 0, tzinfo=UTC)
KEYS = [
    "id",
    "taskId",
    "taskName",
    "project",
    "startedAt",
    "completedAt",
    "status",
    "duration",
    "error",
    "cronExpression",
    "worktreeBranch",
    "trigger",
    "attempt",
    "exitCode",
    "files",
    "host",
]


def start(run_id: str, at: datetime, job: str = "alpha") -> RunRecord:
    return RunRecord(
        id=run_id,
        job=job,
        project="vault",
        started_at=at,
        status="running",
        trigger="schedule",
        host="box",
        cron="*/5 * * * *",
    )


def finish(
    record: RunRecord, at: datetime, status: str = "success", duration: int | None = -1
) -> RunRecord:
    """The final line of `record`; duration defaults to the real one (None: no duration)."""
    return RunRecord(
        id=record.id,
        job=record.job,
        project=record.project,
        started_at=record.started_at,
        status=status,
        trigger=record.trigger,
        host=record.host,
        completed_at=at,
        duration_ms=int((at - record.started_at).total_seconds() * 1000)
        if duration == -1
        else duration,
        error=None if status == "success" else f"{status}!",
        cron=record.cron,
        exit_code=0 if status == "success" else 1,
        files=["Inbox/a.md"],
    )


def one_run(
    writer: HistoryWriter,
    run_id: str,
    at: datetime,
    job: str = "alpha",
    status: str = "success",
    seconds: float = 1.0,
    duration: int | None = -1,
) -> RunRecord:
    record = start(run_id, at, job)
    writer.append(record)
    final = finish(record, at + timedelta(seconds=seconds), status, duration)
    writer.append(final)
    return final


@pytest.fixture
def history(tmp_path: Path) -> Path:
    return tmp_path / "Logs" / "history"


@pytest.fixture
def writer(history: Path):
    writer = HistoryWriter(history)
    yield writer
    writer.close()


def ids(records: list[RunRecord]) -> list[str]:
    return [record.id for record in records]


def all_lines(history: Path) -> list[bytes]:
    return [
        line for path in sorted(history.glob("*.jsonl")) for line in path.read_bytes().splitlines()
    ]


def test_append_running_then_final_folds_to_the_final_line(writer, history):
    record = start("r1", T0)
    writer.append(record)
    assert [r.status for r in recent(history, Query()).records] == ["running"]

    writer.append(finish(record, T0 + timedelta(seconds=3), "failure"))
    result = recent(history, Query())

    assert len(all_lines(history)) == 2
    assert result.bad_lines == 0
    [run] = result.records
    assert (run.id, run.status, run.duration_ms) == ("r1", "failure", 3000)
    assert run.completed_at == T0 + timedelta(seconds=3)
    assert run.files == ["Inbox/a.md"] and run.error == "failure!"
    assert ids(runs_since(history, T0).records) == ["r1"]


def test_every_line_is_an_object_with_the_sixteen_keys_in_order(writer, history):
    one_run(writer, "r1", T0)
    weird = start('q"uote\\back\nline-é', T0 + timedelta(seconds=5), job='odd "job"')
    writer.append(weird)
    lines = all_lines(history)
    assert len(lines) == 3
    for line in lines:
        assert list(json.loads(line)) == KEYS
    if shutil.which("jq"):
        for path in history.glob("*.jsonl"):
            out = subprocess.run(["jq", "-c", "."], input=path.read_bytes(), capture_output=True)
            assert out.returncode == 0, out.stderr
            assert [list(json.loads(line)) for line in out.stdout.splitlines()] == [KEYS] * 3


def test_odd_characters_survive_and_filter(writer, history):
    job = 'odd "job" \\ é'
    one_run(writer, 'id"\\1', T0, job=job)
    one_run(writer, "plain", T0 + timedelta(seconds=5))

    [run] = recent(history, Query(job=job)).records
    assert (run.id, run.job) == ('id"\\1', job)
    assert stats(history, T0)[job].runs == 1


def test_a_long_run_started_before_fifty_short_ones_is_still_found(writer, history):
    long_run = start("long", T0)
    writer.append(long_run)
    for n in range(50):
        one_run(writer, f"short{n:02d}", T0 + timedelta(seconds=1 + n))
    writer.append(finish(long_run, T0 + timedelta(hours=2)))

    last51 = recent(history, Query(limit=51)).records
    assert ids(last51) == [f"short{n:02d}" for n in reversed(range(50))] + ["long"]
    assert last51[-1].status == "success"
    assert "long" not in ids(recent(history, Query(limit=50)).records)
    # Its final line is the newest: a reader stopping at the first old start finds nothing.
    after_long = recent(history, Query(since=T0 + timedelta(seconds=0.5), limit=100)).records
    assert len(after_long) == 50
    since_t0 = recent(history, Query(since=T0, limit=100)).records
    assert len(since_t0) == 51 and since_t0[-1].status == "success"
    assert len(runs_since(history, T0).records) == 51
    assert stats(history, T0)["alpha"].runs == 51


def test_last_n_keeps_reading_past_n_ids_written_late(writer, history):
    # 400 long runs start first; c1 and c2 start after all of them, and between and after
    # their lines come the long runs' final lines, far more than one read block of them.
    long_runs = [start(f"long{n:03d}", T0 + timedelta(seconds=n)) for n in range(400)]
    for record in long_runs:
        writer.append(record)
    one_run(writer, "c1", T0 + timedelta(seconds=1000))
    for n, record in enumerate(long_runs[:200]):
        writer.append(finish(record, T0 + timedelta(seconds=2000 + n)))
    one_run(writer, "c2", T0 + timedelta(seconds=3000))
    for n, record in enumerate(long_runs[200:]):
        writer.append(finish(record, T0 + timedelta(seconds=4000 + n)))

    # The newest lines belong to older runs: reading must go on to the write time of the
    # N-th newest start, not stop at N ids nor at the newest start.
    assert ids(recent(history, Query(limit=2)).records) == ["c2", "c1"]
    assert ids(recent(history, Query(limit=3)).records) == ["c2", "c1", "long399"]
    assert ids(recent(history, Query(since=T0 + timedelta(seconds=500))).records) == ["c2", "c1"]
    assert stats(history, T0)["alpha"].last_run.id == "c2"


def test_a_run_with_two_final_lines_counts_once_by_the_last(writer, history):
    first = one_run(writer, "twice", T0, status="failure")
    for n in range(200):  # enough lines to put the two final lines in different read blocks
        one_run(writer, f"pad{n:03d}", T0 + timedelta(seconds=10 + n), job="pad")
    writer.append(finish(first, T0 + timedelta(seconds=500), "interrupted"))

    assert [r.status for r in recent(history, Query(job="alpha")).records] == ["interrupted"]
    alpha = stats(history, T0)["alpha"]
    assert (alpha.runs, alpha.counts["interrupted"], alpha.counts["failure"]) == (1, 1, 0)


def test_torn_and_garbage_lines_are_skipped_counted_and_healed(writer, history):
    one_run(writer, "good1", T0)
    writer.close()
    segment = history / "2025-03-14.jsonl"
    with segment.open("ab") as file:
        file.write(b"not json at all\n[1, 2, 3]\n{}\n")
        file.write(b'{"id":"x","taskId":"alpha","startedAt":"2025-03-14T12:00:00+00:00"}\n')
        file.write(b"\n")  # a blank line is no record, and not counted as a bad one
        file.write(start("torn", T0 + timedelta(seconds=9)).to_line()[:70])  # crash mid-write

    result = recent(history, Query())
    assert ids(result.records) == ["good1"]
    assert result.bad_lines == 5  # four garbage lines and the torn one

    later = HistoryWriter(history)
    one_run(later, "good2", T0 + timedelta(seconds=20))
    later.close()

    result = recent(history, Query())
    assert ids(result.records) == ["good2", "good1"]
    assert result.bad_lines == 5  # the torn line is now a whole (bad) line of its own
    # Without the writer's newline, good2's running line would have merged into the torn one.
    tail = [json.loads(line) for line in segment.read_bytes().splitlines()[-2:]]
    assert [(line["id"], line["status"]) for line in tail] == [
        ("good2", "running"),
        ("good2", "success"),
    ]


def test_a_line_broken_after_its_leading_fields(writer, history):
    """The byte-level reader trusts a line's opening fields; json.loads still has the last word."""
    one_run(writer, "good", T0)
    broken = finish(start("broken", T0 + timedelta(seconds=5)), T0 + timedelta(seconds=6))
    writer.close()
    with (history / "2025-03-14.jsonl").open("ab") as file:
        file.write(broken.to_line().replace(b'"files":["Inbox/a.md"]', b'"files":[,]'))

    result = recent(history, Query())
    assert ids(result.records) == ["good"] and result.bad_lines == 1
    alpha = stats(history, T0)["alpha"]
    assert alpha.runs == 2
    assert (alpha.last_run.id, alpha.last_run.status, alpha.last_run.duration_ms) == (
        "broken",
        "success",
        1000,
    )


def test_a_line_longer_than_a_read_block(writer, history):
    huge = finish(start("huge", T0), T0 + timedelta(seconds=2), "failure")
    huge.error = "x" * 300_000
    writer.append(start("huge", T0))
    one_run(writer, "small", T0 + timedelta(seconds=1))
    writer.append(huge)

    result = recent(history, Query())
    assert ids(result.records) == ["small", "huge"]
    assert result.records[1].error == huge.error
    assert stats(history, T0)["alpha"].counts["failure"] == 1

    writer.close()
    with (history / "2025-03-14.jsonl").open("ab") as file:
        file.write(huge.to_line()[:-1000])  # torn, and longer than a read block too
    result = recent(history, Query())
    assert ids(result.records) == ["small", "huge"] and result.bad_lines == 1


@pytest.mark.parametrize("torn", [FIRST_BLOCK - 2, FIRST_BLOCK - 1, FIRST_BLOCK])
def test_a_torn_tail_ending_where_a_read_block_starts(writer, history, torn):
    one_run(writer, "good", T0)
    writer.close()
    with (history / "2025-03-14.jsonl").open("ab") as file:
        file.write(b"{" + b"x" * (torn - 1))

    result = recent(history, Query())
    assert ids(result.records) == ["good"] and result.bad_lines == 1


def test_a_run_across_midnight_folds_across_two_segments(writer, history):
    night = datetime(2025, 3, 14, 23, 59, 59, tzinfo=UTC)
    record = start("late", night)
    writer.append(record)
    writer.append(finish(record, night + timedelta(seconds=3)))

    assert sorted(p.name for p in history.iterdir()) == ["2025-03-14.jsonl", "2025-03-15.jsonl"]
    [run] = recent(history, Query()).records
    assert (run.status, run.duration_ms) == ("success", 3000)
    assert ids(recent(history, Query(since=night)).records) == ["late"]
    assert ids(runs_since(history, night - timedelta(minutes=1)).records) == ["late"]
    assert open_runs(history, night) == []
    assert stats(history, night)["alpha"].counts["success"] == 1


def test_filters_by_job_status_since_and_limit(writer, history):
    plan = [
        ("a1", "alpha", "success"),
        ("b1", "beta", "failure"),
        ("a2", "alpha", "failure"),
        ("b2", "beta", "success"),
        ("a3", "alpha", "timeout"),
        ("b3", "beta", "failure"),
    ]
    for n, (run_id, job, status) in enumerate(plan):
        one_run(writer, run_id, T0 + timedelta(minutes=n), job, status)

    def query(**kwargs) -> list[str]:
        return ids(recent(history, Query(**kwargs)).records)

    assert query() == ["b3", "a3", "b2", "a2", "b1", "a1"]
    assert query(job="alpha") == ["a3", "a2", "a1"]
    assert query(status="failure") == ["b3", "a2", "b1"]
    assert query(job="beta", status="failure") == ["b3", "b1"]
    assert query(since=T0 + timedelta(minutes=2)) == ["b3", "a3", "b2", "a2"]
    assert query(since=T0 + timedelta(minutes=2), status="failure", limit=1) == ["b3"]
    assert query(limit=2) == ["b3", "a3"]
    assert query(limit=0) == []
    assert query(job="nobody") == []
    with pytest.raises(ValueError, match="unknown status 'failed'"):
        Query(status="failed")
    assert recent(history / "missing", Query()).records == []


def test_open_runs_are_those_whose_last_line_is_running(writer, history):
    yesterday = T0 - timedelta(days=1)
    writer.append(start("old-open", yesterday))
    writer.append(start("open1", T0))
    one_run(writer, "done", T0 + timedelta(seconds=1))
    writer.append(start("open2", T0 + timedelta(seconds=2)))

    assert ids(open_runs(history, T0)) == ["open2", "open1"]
    assert ids(open_runs(history, yesterday)) == ["open2", "open1", "old-open"]
    assert all(run.status == "running" for run in open_runs(history, yesterday))


def test_stats_on_a_hand_computed_dataset(writer, history):
    since = T0
    # Before the window, by start: not counted, even when it ends inside the window.
    one_run(writer, "before", since - timedelta(hours=1))
    one_run(writer, "straddles", since - timedelta(seconds=5), seconds=10)
    alpha = [(9, "success"), (95, "failure"), (100, "success"), (10, "timeout"), (1000, "success")]
    for n, (ms, status) in enumerate(alpha):
        one_run(writer, f"a{n}", since + timedelta(minutes=n), "alpha", status, duration=ms)
    one_run(writer, "a-skip", since + timedelta(minutes=6), "alpha", "skipped", duration=None)
    writer.append(start("a-running", since + timedelta(minutes=7), "alpha"))
    one_run(writer, "b0", since + timedelta(minutes=8), "beta", "failure", duration=5000)
    one_run(writer, "c0", since + timedelta(minutes=9), "gamma", "skipped", duration=None)

    result = stats(history, since)

    assert set(result) == {"alpha", "beta", "gamma"}
    a = result["alpha"]
    assert a.runs == 6
    assert a.counts == {
        "success": 3,
        "failure": 1,
        "timeout": 1,
        "skipped": 1,
        "cancelled": 0,
        "interrupted": 0,
    }
    assert a.success_rate == pytest.approx(3 / 5)
    assert (a.p50_ms, a.p95_ms) == (95, 1000)  # of 9, 10, 95, 100, 1000: ranks 3 and 5
    assert (a.last_run.id, a.last_run.status) == ("a-skip", "skipped")
    b = result["beta"]
    assert (b.runs, b.success_rate, b.p50_ms, b.p95_ms) == (1, 0.0, 5000, 5000)
    c = result["gamma"]
    assert (c.runs, c.success_rate, c.p50_ms, c.p95_ms) == (1, None, None, None)
    assert set(stats(history, since - timedelta(hours=2))["alpha"].counts) == FINAL_STATUSES


def test_an_operators_cancel_does_not_count_against_the_success_rate(writer, history):
    since = T0
    one_run(writer, "ok", since, "alpha", "success", duration=100)
    one_run(writer, "stopped", since + timedelta(minutes=1), "alpha", "cancelled", duration=50)
    one_run(writer, "only-cancel", since + timedelta(minutes=2), "beta", "cancelled", duration=5)

    result = stats(history, since)

    assert result["alpha"].success_rate == 1.0  # success / (runs - skipped - cancelled)
    assert result["alpha"].counts["cancelled"] == 1 and result["alpha"].runs == 2
    assert result["beta"].success_rate is None  # nothing was judged, not 0%


def test_prune_deletes_only_old_segments(history):
    history.mkdir(parents=True)
    for day in range(10, 15):
        (history / f"2025-03-{day}.jsonl").write_text("")
    (history / "notes.txt").write_text("keep me")

    deleted = prune(history, keep_days=2, today=date(2025, 3, 14))

    assert sorted(p.name for p in deleted) == ["2025-03-10.jsonl", "2025-03-11.jsonl"]
    assert sorted(p.name for p in history.iterdir()) == [
        "2025-03-12.jsonl",
        "2025-03-13.jsonl",
        "2025-03-14.jsonl",
        "notes.txt",
    ]
    assert prune(history, keep_days=2, today=date(2025, 3, 14)) == []


def keeper_log_at(tmp_path: Path) -> tuple[KeeperLog, Path]:
    path = tmp_path / "keeper.log"
    return KeeperLog(path, 1_000_000, 1), path


def test_lines_a_full_disk_refused_are_kept_and_written_late_in_order(history, tmp_path):
    log, log_path = keeper_log_at(tmp_path)
    writer = HistoryWriter(history, log)
    history.mkdir(parents=True)
    segment = history / "2025-03-14.jsonl"
    segment.symlink_to("/dev/full")  # every write: ENOSPC, as on a full disk

    first = start("r1", T0)
    written = [first, finish(first, T0 + timedelta(seconds=1))]
    written += [start(f"r{n}", T0 + timedelta(seconds=n)) for n in range(2, 6)]
    for record in written:
        writer.append(record)  # must not raise
    assert writer.backlog == len(written)
    failed = [line for line in log_path.read_text().splitlines() if "ERROR" in line]
    assert len(failed) == 1 and "cannot write history: No space left on device" in failed[0]

    segment.unlink()  # space again
    written.append(finish(written[2], T0 + timedelta(seconds=7)))
    writer.append(written[-1])
    writer.close()
    log.close()

    assert segment.read_bytes() == b"".join(record.to_line() for record in written)
    assert writer.backlog == 0
    assert "wrote 6 history line(s) late after: No space left on device" in log_path.read_text()


def test_a_failing_write_is_retried_on_the_timer_until_it_works(history, tmp_path):
    log, log_path = keeper_log_at(tmp_path)
    writer = HistoryWriter(history, log)
    timer: list[tuple[float, Callable[[], None]]] = []
    writer.retry_later = lambda delay, callback: timer.append((delay, callback))
    (history / "2025-03-14.jsonl").mkdir(parents=True)  # the segment cannot be opened
    writer.append(start("kept", T0))
    writer.append(start("kept too", T0 + timedelta(seconds=1)))
    assert len(timer) == 1 and timer[0][0] > 0  # one timer, however many lines wait

    timer.pop()[1]()  # still failing: tried, and the timer set again
    assert len(timer) == 1 and writer.backlog == 2
    (history / "2025-03-14.jsonl").rmdir()
    timer.pop()[1]()  # nothing else is written: the timer alone puts them on disk
    assert timer == [] and writer.backlog == 0
    assert ids(recent(history, Query()).records) == ["kept too", "kept"]
    log.close()
    text = log_path.read_text()
    assert text.count("cannot write history") == 1
    assert "wrote 2 history line(s) late after: Is a directory" in text


def test_write_errors_raise_without_a_log(history):
    (history / "2025-03-14.jsonl").mkdir(parents=True)
    writer = HistoryWriter(history)
    with pytest.raises(IsADirectoryError):
        writer.append(start("lost", T0))


def test_deferred_lines_wait_for_one_flush_and_keep_their_order_and_days(history):
    scheduled: list = []
    writer = HistoryWriter(history)
    writer.defer = scheduled.append
    late = start("late", T0 + timedelta(hours=11, minutes=59))
    writer.append(start("r1", T0))
    writer.append(late)
    writer.append(finish(late, T0 + timedelta(hours=12, minutes=1)))  # the next UTC day
    writer.append(finish(start("r1", T0), T0 + timedelta(seconds=1)))
    assert scheduled == [writer.flush]  # one flush for the whole batch
    assert all_lines(history) == []

    scheduled.pop()()
    segments = sorted(path.name for path in history.glob("*.jsonl"))
    assert segments == ["2025-03-14.jsonl", "2025-03-15.jsonl"]
    first_day = [json.loads(line) for line in (history / segments[0]).read_bytes().splitlines()]
    assert [(line["id"], line["status"]) for line in first_day] == [
        ("r1", "running"),
        ("late", "running"),
        ("r1", "success"),
    ]
    assert json.loads((history / segments[1]).read_bytes())["id"] == "late"
    assert ids(recent(history, Query()).records) == ["late", "r1"]

    writer.append(start("r2", T0 + timedelta(seconds=2)))
    assert scheduled == [writer.flush]  # the next batch asks again
    writer.close()  # writes what is left without being asked
    assert "r2" in ids(recent(history, Query()).records)


def test_a_failing_flush_keeps_the_batch_and_writes_it_before_later_lines(history, tmp_path):
    log, log_path = keeper_log_at(tmp_path)
    writer = HistoryWriter(history, log)
    writer.defer = lambda flush: None
    (history / "2025-03-14.jsonl").mkdir(parents=True)
    writer.append(start("late", T0))
    writer.append(start("late too", T0))
    writer.flush()
    writer.flush()

    (history / "2025-03-14.jsonl").rmdir()
    writer.append(start("on time", T0 + timedelta(seconds=1)))
    writer.flush()
    writer.close()
    log.close()
    assert [json.loads(line)["id"] for line in all_lines(history)] == [
        "late",
        "late too",
        "on time",
    ]
    assert log_path.read_text().count("cannot write history") == 1


def test_hand_written_lines_are_read_too(history):
    history.mkdir(parents=True)
    lines = [
        # Spaced JSON, a Z suffix and another offset: no fast path, same meaning.
        {"id": "h1", "taskId": "alpha", "startedAt": "2025-03-14T12:00:00Z", "status": "running"},
        {
            "id": "h1",
            "taskId": "alpha",
            "startedAt": "2025-03-14T13:00:00+01:00",
            "completedAt": "2025-03-14T12:00:02Z",
            "status": "success",
            "duration": 2000,
        },
        {"id": "h2", "taskId": "beta", "startedAt": "2025-03-14T12:00:05", "status": "running"},
    ]
    (history / "2025-03-14.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))

    result = recent(history, Query())
    assert [(r.id, r.status) for r in result.records] == [("h2", "running"), ("h1", "success")]
    assert result.records[0].started_at.tzinfo is not None
    assert result.bad_lines == 0
    assert ids(open_runs(history, T0)) == ["h2"]
    assert stats(history, T0)["alpha"].p50_ms == 2000


# --- against a plain json.loads fold, on a history spread over several blocks and days ---


def make_history(writer: HistoryWriter, runs: int, seed: int) -> None:
    rng = random.Random(seed)
    pending: list[tuple[datetime, int, RunRecord]] = []
    at = T0
    for n in range(runs):
        at += timedelta(milliseconds=rng.randint(1, 120_000))
        while pending and pending[0][0] <= at:
            writer.append(heapq.heappop(pending)[2])
        record = start(f"r{n:05d}", at, f"job{rng.randrange(7)}")
        writer.append(record)
        if rng.random() < 0.01:
            continue  # never finishes: left running by a keeper that died
        seconds = rng.expovariate(1 / 20)
        if rng.random() < 0.03:
            seconds = rng.uniform(3_600, 6 * 3_600)
        status = rng.choice(["success"] * 20 + ["failure", "timeout", "skipped", "cancelled"])
        end = at + timedelta(seconds=seconds)
        final = finish(record, end, status, None if status == "skipped" else -1)
        heapq.heappush(pending, (end, n, final))
    while pending:
        writer.append(heapq.heappop(pending)[2])


def reference_fold(history: Path) -> list[RunRecord]:
    folded: dict[str, RunRecord] = {}
    for line in all_lines(history):
        record = RunRecord.from_json(json.loads(line))
        folded[record.id] = record
    return sorted(folded.values(), key=lambda r: (r.started_at, r.id), reverse=True)


def reference_stats(runs: list[RunRecord], since: datetime) -> dict[str, tuple]:
    by_job: dict[str, list[RunRecord]] = {}
    for run in runs:
        if run.status != "running" and run.started_at >= since:
            by_job.setdefault(run.job, []).append(run)
    result = {}
    for job, job_runs in by_job.items():
        durations = sorted(r.duration_ms for r in job_runs if r.duration_ms is not None)

        def rank(percent: int, durations=durations) -> int | None:
            return durations[math.ceil(percent * len(durations) / 100) - 1] if durations else None

        ran = [r for r in job_runs if r.status not in ("skipped", "cancelled")]
        success = sum(r.status == "success" for r in job_runs)
        result[job] = (
            len(job_runs),
            success / len(ran) if ran else None,
            rank(50),
            rank(95),
            max(job_runs, key=lambda r: (r.started_at, r.id)).id,
        )
    return result


def test_queries_match_a_plain_fold_of_every_line(writer, history):
    make_history(writer, runs=4000, seed=11)
    writer.close()
    everything = reference_fold(history)
    assert len(list(history.glob("*.jsonl"))) >= 3
    assert max(p.stat().st_size for p in history.glob("*.jsonl")) > 512 * 1024  # many blocks

    for limit in (1, 7, 50, 600):
        assert ids(recent(history, Query(limit=limit)).records) == ids(everything[:limit])
    rng = random.Random(5)
    starts = [run.started_at for run in everything]
    for _ in range(12):
        since = rng.choice(starts) - timedelta(milliseconds=rng.randint(0, 1))
        job = rng.choice([None, "job3"])
        status = rng.choice([None, "failure", "running", "success"])
        expected = [
            r
            for r in everything
            if r.started_at >= since
            and (job is None or r.job == job)
            and (status is None or r.status == status)
        ]
        query = Query(job=job, status=status, since=since, limit=40)
        result = recent(history, query)
        assert ids(result.records) == ids(expected[:40]), query
        assert result.bad_lines == 0
        assert ids(runs_since(history, since).records) == ids(
            [r for r in everything if r.started_at >= since]
        )
        got = {
            job: (s.runs, s.success_rate, s.p50_ms, s.p95_ms, s.last_run.id)
            for job, s in stats(history, since).items()
        }
        assert got == reference_stats(everything, since)
    first_day = datetime.combine(everything[-1].started_at.date(), datetime.min.time(), UTC)
    assert ids(open_runs(history, first_day)) == ids(
        [r for r in everything if r.status == "running"]
    )


def test_durations_round_to_the_nearest_millisecond():
    # A run of 9.6 ms used to be recorded as 9, and one of 0.8 ms as 0.
    assert [elapsed_ms(seconds) for seconds in (0.0096, 0.0008, 0.0104, 0.0004, 2.0)] == [
        10,
        1,
        10,
        0,
        2000,
    ]
