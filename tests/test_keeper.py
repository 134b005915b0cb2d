"""The keeper in-process, with real jobs: scheduling, overlap, chains, retries, pause."""

from __future__ import annotations

import asyncio
import errno
import os
import random
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest
from conftest import (
    final_records,
    finals,
    finish,
    history_lines,
    pid_alive,
    started_keeper,
    until,
)

from watchkeeper.core import runner, slices, tuning
from watchkeeper.core.config import load_config
from watchkeeper.core.history import HistoryWriter, RunRecord, utc_now
from watchkeeper.core.keeper import Keeper, StartRequest, UnknownJob
from watchkeeper.core.once import run_once
from watchkeeper.core.runner import RunSpec, Spawned, spawn
from watchkeeper.core.runtime import ActiveRun
from watchkeeper.core.seams import ManualClock, Started
from watchkeeper.core.slots import Slots
from watchkeeper.core.state import load_state
from watchkeeper.core.tuning import FINE_WAIT, READY_EACH, READY_MAX


async def test_interval_job_runs_repeatedly_with_records(make_vault) -> None:
    vault = make_vault(
        """
        [jobs.tick]
        command = ["sh", "-c", "echo tick $WATCHKEEPER_TRIGGER"]
        every = "200ms"
        """
    )
    keeper = await started_keeper(vault)
    serving = asyncio.create_task(keeper.serve())
    await until(lambda: len(finals(vault, "tick")) >= 3)
    await finish(keeper, serving)
    records = finals(vault, "tick")
    assert all(
        record["status"] == "success" and record["trigger"] == "schedule" for record in records
    )
    lines = history_lines(vault)
    for record in records:
        ids = [line["status"] for line in lines if line["id"] == record["id"]]
        assert ids == ["running", "success"]
    log = (vault / "Logs" / "jobs" / "tick.log").read_text()
    assert f"[{records[0]['id']}] tick schedule" in log


async def test_overlap_skip_records_a_skipped_run(make_vault) -> None:
    vault = make_vault(
        """
        [jobs.slow]
        command = ["sleep", "0.6"]
        """
    )
    keeper = await started_keeper(vault)
    first = keeper.run_now("slow")
    second = keeper.run_now("slow")
    await keeper.wait_idle(10)
    await finish(keeper)
    records = final_records(vault)
    assert records[first]["status"] == "success"
    assert records[second]["status"] == "skipped"
    assert records[second]["error"] == f"run {first} still running (overlap = skip)"


async def test_overlap_queue_runs_one_after_the_other(make_vault) -> None:
    vault = make_vault(
        """
        [jobs.q]
        command = ["sleep", "0.3"]
        overlap = "queue"
        """
    )
    keeper = await started_keeper(vault)
    first, second, third = (keeper.run_now("q") for _ in range(3))
    await keeper.wait_idle(10)
    await finish(keeper)
    records = final_records(vault)
    assert records[first]["status"] == records[second]["status"] == "success"
    assert records[second]["startedAt"] >= records[first]["completedAt"]
    assert records[third]["status"] == "skipped"


async def test_max_parallel_holds_runs_back(make_vault, tmp_path: Path) -> None:
    marks = tmp_path / "marks"
    marks.mkdir()
    jobs = "\n".join(
        f"""
        [jobs.j{index}]
        command = ["sh", "-c", "touch {marks}/$WATCHKEEPER_JOB; sleep 0.4"]
        """
        for index in range(4)
    )
    vault = make_vault("[keeper]\nmax_parallel = 2\n" + jobs)
    keeper = await started_keeper(vault)
    for index in range(4):
        keeper.run_now(f"j{index}")
    assert keeper.snapshot()["running"] == 2
    assert keeper.snapshot()["waiting"] == 2
    await keeper.wait_idle(10)
    await finish(keeper)
    records = sorted(finals(vault), key=lambda record: record["startedAt"])
    assert [record["status"] for record in records] == ["success"] * 4
    # The last two could only start once the first two had ended.
    assert min(r["startedAt"] for r in records[2:]) >= min(r["completedAt"] for r in records[:2])


async def test_a_run_waiting_for_a_slot_waits_for_the_resume_once_its_job_is_paused(
    make_vault, tmp_path: Path
) -> None:
    gate = tmp_path / "go"
    vault = make_vault(
        f"""
        [keeper]
        max_parallel = 1
        [jobs.hold]
        command = ["sh", "-c", "while [ ! -e {gate} ]; do sleep 0.02; done"]
        [jobs.b]
        command = ["true"]
        """
    )
    keeper = await started_keeper(vault)
    holding = keeper.run_now("hold")
    waiting = keeper.submit(StartRequest("b", "schedule"))
    assert keeper.snapshot()["waiting"] == 1
    keeper.pause("b")
    gate.touch()
    await until(lambda: holding in {record["id"] for record in finals(vault)})
    await until(lambda: keeper.snapshot()["waiting"] == 0)
    assert waiting not in final_records(vault)  # not started while paused
    plan = keeper.resume_plan("b")
    assert [(run.kind, run.outcome) for run in plan.runs] == [("queued", "starts")]
    keeper.resume("b")
    await until(lambda: waiting in {record["id"] for record in finals(vault)})
    await finish(keeper)
    assert final_records(vault)[waiting]["status"] == "success"


async def test_after_chain_runs_dependents_in_order(make_vault) -> None:
    vault = make_vault(
        """
        [jobs.a]
        command = ["true"]
        every = "1h"
        [jobs.b]
        command = ["true"]
        after = ["a"]
        [jobs.c]
        command = ["true"]
        after = ["b"]
        [jobs.broken]
        command = ["false"]
        every = "1h"
        [jobs.never]
        command = ["true"]
        after = ["broken"]
        """
    )
    keeper = await started_keeper(vault)
    chosen = await run_once(keeper)
    await finish(keeper)
    assert sorted(chosen) == ["a", "broken"]
    by_job = {record["taskId"]: record for record in finals(vault)}
    assert set(by_job) == {"a", "b", "c", "broken"}
    assert by_job["b"]["trigger"] == by_job["c"]["trigger"] == "after"
    assert by_job["a"]["completedAt"] <= by_job["b"]["startedAt"]
    assert by_job["b"]["completedAt"] <= by_job["c"]["startedAt"]


async def test_retries_are_separate_attempts(make_vault) -> None:
    vault = make_vault(
        """
        [jobs.flaky]
        command = ["sh", "-c", "exit 3"]
        retries = 2
        retry_delay = "50ms"
        """
    )
    keeper = await started_keeper(vault)
    keeper.run_now("flaky")
    await until(lambda: len(finals(vault, "flaky")) == 3)
    await finish(keeper)
    records = sorted(finals(vault, "flaky"), key=lambda record: record["attempt"])
    assert [(r["attempt"], r["trigger"], r["status"], r["exitCode"]) for r in records] == [
        (1, "manual", "failure", 3),
        (2, "retry", "failure", 3),
        (3, "retry", "failure", 3),
    ]


async def test_pause_persists_and_skips_scheduled_slots(make_vault) -> None:
    vault = make_vault(
        """
        [jobs.tick]
        command = ["true"]
        every = "100ms"
        [jobs.other]
        command = ["true"]
        every = "100ms"
        """
    )
    keeper = await started_keeper(vault)
    keeper.pause("tick")
    serving = asyncio.create_task(keeper.serve())
    await until(lambda: len(finals(vault, "other")) >= 3)
    assert finals(vault, "tick") == []
    assert keeper.jobs["tick"].missed_while_paused >= 2
    assert load_state(vault).paused_jobs == {"tick"}
    keeper.resume("tick")
    await until(lambda: len(finals(vault, "tick")) >= 1)
    keeper.pause()
    assert load_state(vault).paused is True
    await finish(keeper, serving)


async def test_cancel_ends_a_running_run(make_vault) -> None:
    vault = make_vault(
        """
        [jobs.long]
        command = ["sleep", "60"]
        """
    )
    keeper = await started_keeper(vault)
    run_id = keeper.run_now("long")
    assert keeper.cancel(run_id)
    await keeper.wait_idle(10)
    await finish(keeper)
    record = final_records(vault)[run_id]
    assert (record["status"], record["error"]) == ("cancelled", "cancelled by operator")


async def test_spawn_failure_is_recorded(make_vault) -> None:
    vault = make_vault(
        """
        [jobs.ghost]
        command = ["/no/such/program"]
        """
    )
    keeper = await started_keeper(vault)
    run_id = keeper.run_now("ghost")
    await finish(keeper)
    record = final_records(vault)[run_id]
    assert record["status"] == "failure"
    assert record["exitCode"] == 127
    assert "cannot start /no/such/program" in record["error"]


async def test_stop_cancels_runs_past_the_grace(make_vault) -> None:
    vault = make_vault(
        """
        [keeper]
        kill_grace = "1s"
        [jobs.long]
        command = ["sleep", "60"]
        """
    )
    keeper = await started_keeper(vault)
    run_id = keeper.run_now("long")
    await keeper.stop(grace=0.2)
    assert keeper.lock is not None
    keeper.lock.release()
    record = final_records(vault)[run_id]
    assert (record["status"], record["error"]) == ("cancelled", "keeper stopped")


async def test_secret_values_never_reach_logs_or_history(make_vault, monkeypatch) -> None:
    monkeypatch.setenv("DEPLOY_TOKEN", "tok-123456789")
    vault = make_vault(
        """
        [jobs.leaky]
        command = ["sh", "-c", "echo token=$DEPLOY_TOKEN api=$API; exit 1"]
        secret_env = ["API"]
        env = { API = "hunter2-secret" }
        """
    )
    keeper = await started_keeper(vault)
    keeper.run_now("leaky")
    await keeper.wait_idle(10)
    await finish(keeper)
    log = (vault / "Logs" / "jobs" / "leaky.log").read_text()
    assert "token=*** api=***" in log
    for path in (vault / "Logs").rglob("*"):
        if path.is_file():
            text = path.read_text(errors="replace")
            assert "tok-123456789" not in text and "hunter2-secret" not in text, path


async def test_each_running_line_is_on_disk_before_its_child_starts(
    make_vault, monkeypatch
) -> None:
    # Written after the spawn, a kill -9 between the two would leave a run that no later
    # keeper could close. Checked where the child is started: in a spawner thread for a
    # burst, on the loop for a lone run (a slot fired by serve(), a run started by hand).
    vault = make_vault(
        "".join(f'[jobs.j{index}]\ncommand = ["true"]\nevery = "1h"\n' for index in range(40))
        + '[jobs.tick]\ncommand = ["true"]\nevery = "100ms"\n'
    )
    history = vault / "Logs" / "history"
    on_disk_at_spawn: dict[str, bool] = {}

    def checking_spawn(spec: RunSpec) -> Spawned:
        lines = b"".join(segment.read_bytes() for segment in history.glob("*.jsonl"))
        on_disk_at_spawn[spec.run_id] = f'{{"id":"{spec.run_id}",'.encode() in lines
        return spawn(spec)

    monkeypatch.setattr(runner, "spawn", checking_spawn)
    keeper = await started_keeper(vault)
    keeper.pause("tick")
    chosen = await run_once(keeper)  # all forty at once, as slots due together would be
    lone = keeper.run_now("j7")
    assert await keeper.wait_idle(10)
    keeper.resume("tick", missed=False)
    serving = asyncio.create_task(keeper.serve())
    await until(lambda: sum(r["id"] in on_disk_at_spawn for r in finals(vault, "tick")) >= 2)
    await finish(keeper, serving)
    assert len(chosen) == 40 and lone in on_disk_at_spawn
    assert len(on_disk_at_spawn) >= 43 and all(on_disk_at_spawn.values())
    # On a busy box a tick can outlast its 100 ms: the next slot is then a skipped record,
    # which starts no child.
    records = [record for record in finals(vault) if record["id"] in on_disk_at_spawn]
    unspawned = [record for record in finals(vault) if record["id"] not in on_disk_at_spawn]
    assert {record["status"] for record in unspawned} <= {"skipped"}
    assert {record["status"] for record in records} == {"success"}
    assert len(records) == len(on_disk_at_spawn)
    for record in records:
        lines = [line["status"] for line in history_lines(vault) if line["id"] == record["id"]]
        assert lines == ["running", "success"]


async def test_a_slots_runs_are_made_ready_before_it_and_started_at_it(
    make_vault, monkeypatch
) -> None:
    # serve() wakes a little ahead of a slot and readies its runs (records, running lines)
    # while it waits, so that at the due time only the spawns are left. Nothing may start
    # before its slot, and no record may say it did: a per-second cron run stamped x.999
    # would read as the previous second's.
    vault = make_vault(
        '[jobs.tick]\ncommand = ["true"]\nevery = "100ms"\n'
        '[jobs.second]\ncommand = ["true"]\ncron = "* * * * * *"\n'
    )
    spawned_at: dict[str, tuple[float, float]] = {}

    def stamping_spawn(spec: RunSpec) -> Spawned:
        spawned_at[spec.run_id] = (time.monotonic(), time.time())
        return spawn(spec)

    monkeypatch.setattr(runner, "spawn", stamping_spawn)
    keeper = await started_keeper(vault)
    readied_at: dict[str, float] = {}
    slots: dict[str, tuple[float | None, RunRecord]] = {}

    def noting_readied(request: StartRequest) -> None:
        readied_at[request.run_id] = time.monotonic()

    def noting_started(active: ActiveRun, _: Started) -> None:
        slots[active.record.id] = (active.request.due_mono, active.record)

    keeper.runs.on_readied.append(noting_readied)
    keeper.runs.on_started.append(noting_started)
    serving = asyncio.create_task(keeper.serve())
    await until(lambda: len(finals(vault, "second")) >= 3 and len(finals(vault, "tick")) >= 3)
    await finish(keeper, serving)
    assert len(slots) >= 6
    for run_id, (due_mono, record) in slots.items():
        assert due_mono is not None  # every run here is a slot's
        spawn_mono, spawn_wall = spawned_at[run_id]
        assert spawn_mono >= due_mono
        due_wall = spawn_wall - (spawn_mono - due_mono)
        assert due_wall - 0.002 <= record.started_at.timestamp() <= spawn_wall + 0.002
        if record.job == "second":
            assert record.started_at.microsecond < 500_000
    assert any(readied_at[run_id] < (due or 0) for run_id, (due, _) in slots.items())
    # A slot that comes while the last 100 ms run still goes is skipped (overlap) on a busy
    # box: it started nothing, so it says nothing about readying; every run that started ended
    # well.
    statuses = {record["status"] for record in finals(vault)}
    assert "success" in statuses and statuses <= {"success", "skipped"}


def test_serve_wakes_earlier_for_a_pile_of_slots_at_one_instant() -> None:
    # Time to ready every run due at the next instant, found by walking the heap down from
    # its root through equal entries only: checked against a plain count.
    clock = ManualClock()
    slots = Slots(clock)
    rng = random.Random(7)
    for _ in range(200):
        for heap in slots.heaps.values():
            heap.clear()
        base = clock.monotonic() + 10
        dues = [base + rng.choice([0.0, 0.0, 0.5, 1.0, 2.0]) for _ in range(rng.randint(1, 80))]
        for due in dues:
            slots.push("mono", due, "a", 0)
        pile = min(READY_MAX, dues.count(min(dues)) * READY_EACH)
        assert slots.lead() == pytest.approx(FINE_WAIT + pile)
    for _ in range(6000):  # more than READY_MAX holds
        slots.push("mono", base, "a", 0)
    assert slots.lead() == pytest.approx(FINE_WAIT + READY_MAX)
    slots.push("wall", clock.time() + 5, "a", 0)  # sooner, on the other clock, alone
    assert slots.lead() == pytest.approx(FINE_WAIT + READY_EACH)


async def test_wait_idle_returns_with_every_record_on_disk(make_vault) -> None:
    # A run's final line is written a loop turn after the run closes, or later on a busy
    # loop; what waits for idle (--once, `run`, a caller reading history) must not see
    # the run over and its record still running.
    vault = make_vault('[jobs.quick]\ncommand = ["true"]\n')
    keeper = await started_keeper(vault)
    loop = asyncio.get_running_loop()
    assert isinstance(keeper.history, HistoryWriter)  # the JSONL store's
    keeper.history.defer = lambda flush: loop.call_later(60, flush)
    run_id = keeper.run_now("quick")
    assert await keeper.wait_idle(10)
    statuses = [line["status"] for line in history_lines(vault) if line["id"] == run_id]
    await finish(keeper)
    assert statuses == ["running", "success"]


async def test_a_burst_comes_back_to_the_loop_a_slice_per_turn(make_vault, monkeypatch) -> None:
    # Thirty runs handed to the spawner together come back as one batch; taken all in one
    # loop turn, a slot falling due meanwhile would wait behind every one of them.
    monkeypatch.setattr(tuning, "SPAWN_BATCH", 100)
    monkeypatch.setattr(tuning, "STARTED_SLICE", 0.0)
    monkeypatch.setattr(tuning, "STARTED_MIN", 0.0)
    vault = make_vault(
        "[keeper]\nmax_parallel = 30\n"
        + "".join(
            f'[jobs.j{index}]\ncommand = ["sh", "-c", "echo out{index}"]\nevery = "1h"\n'
            for index in range(30)
        )
    )
    keeper = await started_keeper(vault)
    loop = asyncio.get_running_loop()
    started: list[str] = []
    started_by_next_turn: list[int] = []

    def counting(active: ActiveRun, _: Started) -> None:
        if not started:
            loop.call_soon(lambda: started_by_next_turn.append(len(started)))
        started.append(active.record.id)

    keeper.runs.on_started.append(counting)
    chosen = await run_once(keeper)
    await finish(keeper)
    assert len(chosen) == 30 and len(started) == 30
    assert started_by_next_turn == [1]
    assert [record["status"] for record in finals(vault)] == ["success"] * 30
    # Output read ahead while the burst was held back still follows the run's first line.
    for index in range(30):
        log = (vault / "Logs" / "jobs" / f"j{index}.log").read_text().splitlines()
        texts = [line.split("] ", 1)[1] for line in log]
        assert texts[0].startswith("▶ started") and texts[1] == f"out{index}"


async def test_dashboard_lists_runs_from_before_the_start_and_since(make_vault) -> None:
    vault = make_vault(
        """
        [jobs.ok]
        command = ["true"]
        [jobs.bad]
        command = ["sh", "-c", "exit 2"]
        """
    )
    started = utc_now() - timedelta(hours=1)
    writer = HistoryWriter(vault / "Logs" / "history")
    writer.append(
        RunRecord(
            id="earlier",
            job="old",
            project=vault.name,
            started_at=started,
            status="failure",
            trigger="schedule",
            host="before",
            completed_at=started + timedelta(seconds=1),
            duration_ms=1000,
            error="exit code 9",
        )
    )
    writer.close()
    keeper = await started_keeper(vault)
    for job in ("ok", "bad", "ok"):
        keeper.run_now(job)
        assert await keeper.wait_idle(10)
    await finish(keeper)  # writes Dashboard.md a last time
    markdown = (vault / "Dashboard.md").read_text()
    runs = markdown.split("\n## Last 10 runs\n", 1)[1].split("\n## ", 1)[0]
    failures = markdown.split("\n## Failures, last 24 h\n", 1)[1].split("\n## ", 1)[0]
    assert runs.count("| ok | ✔ success |") == 2
    assert runs.count("| bad | ✘ failure |") == 1 and runs.count("| old | ✘ failure |") == 1
    rows = [line.split(" | ") for line in failures.splitlines() if line.startswith("| ")]
    assert [row[1] for row in rows] == ["Job", "bad", "old"]  # newest first


async def test_a_run_that_cannot_be_watched_is_ended_and_recorded(make_vault, monkeypatch) -> None:
    vault = make_vault(
        """
        [jobs.long]
        command = ["sleep", "30"]
        """
    )
    real_pidfd_open = os.pidfd_open
    refused: list[int] = []

    def out_of_descriptors(pid: int, flags: int = 0) -> int:
        if not refused:
            refused.append(pid)
            raise OSError(errno.EMFILE, os.strerror(errno.EMFILE))
        return real_pidfd_open(pid, flags)

    monkeypatch.setattr(os, "pidfd_open", out_of_descriptors)
    keeper = await started_keeper(vault)
    unwatched = keeper.run_now("long")
    assert await keeper.wait_idle(10)
    watched = keeper.run_now("long")
    keeper.cancel(watched)
    assert await keeper.wait_idle(10)
    await finish(keeper)
    records = final_records(vault)
    assert (records[unwatched]["status"], records[unwatched]["error"]) == (
        "failure",
        f"cannot watch the run: {os.strerror(errno.EMFILE)}",
    )
    assert records[watched]["status"] == "cancelled"
    assert not pid_alive(refused[0])  # not left running unseen


async def test_dashboard_and_metrics_are_made_a_slice_at_a_time_and_whole(
    make_vault, monkeypatch
) -> None:
    # Made in one go, a thousand jobs' worth would hold up the slots due meanwhile.
    monkeypatch.setattr(slices, "GATHER_SLICE", 0.0)
    vault = make_vault(
        "".join(f'[jobs.j{index:03d}]\ncommand = ["true"]\nevery = "1h"\n' for index in range(300))
    )
    keeper = await started_keeper(vault)
    keeper.run_now("j007")
    assert await keeper.wait_idle(10)
    turns = 0

    async def other_work() -> None:
        nonlocal turns
        while True:
            turns += 1
            await asyncio.sleep(0)

    other = asyncio.create_task(other_work())
    await keeper.outputs.refresh()
    other.cancel()
    markdown = (vault / "Dashboard.md").read_text()
    metrics = (vault / "Logs" / "metrics.prom").read_text()
    await finish(keeper)
    assert turns > 300  # the loop went round between jobs, not once for the lot
    jobs = markdown.split("\n## Jobs\n", 1)[1].split("\n## ", 1)[0]
    assert sum(line.startswith("| j") for line in jobs.splitlines()) == 300
    assert 'watchkeeper_runs_total{job_name="j007",status="success"} 1\n' in metrics
    assert metrics.splitlines()[-1].startswith("watchkeeper_keeper_start_time_seconds ")


def test_a_job_name_not_in_the_config_is_an_unknown_job(make_vault) -> None:
    vault = make_vault('[jobs.a]\ncommand = ["true"]\n')
    keeper = Keeper(load_config(vault / "watchkeeper.toml"))
    calls: list[Callable[[], object]] = [
        lambda: keeper.pause("nope"),
        lambda: keeper.resume("nope"),
        lambda: keeper.resume_plan("nope"),
        lambda: keeper.run_now("nope"),
    ]
    for call in calls:
        with pytest.raises(UnknownJob) as caught:
            call()
        assert isinstance(caught.value, LookupError) and str(caught.value) == "no job named 'nope'"
    keeper.log.close()


async def test_keeper_log_lines_reach_the_bus_only_while_someone_reads_it(make_vault) -> None:
    # A headless keeper does not hand its log lines to a bus nobody reads (two a run); a
    # reader that subscribes gets them from then on, until the last reader leaves.
    vault = make_vault('[jobs.tick]\ncommand = ["true"]\n')
    keeper = await started_keeper(vault)
    try:
        assert keeper.log.listeners == []
        first, second = keeper.bus.subscribe(), keeper.bus.subscribe()
        keeper.log.info("hello readers")
        for reader in (first, second):
            event = reader.get_nowait()
            while event is not None and event.kind != "log_line":
                event = reader.get_nowait()
            assert event is not None and event.data["line"] == "hello readers"
            assert event.data["source"] == "keeper"
        keeper.bus.unsubscribe(first)
        assert keeper.log.listeners != []  # one reader is left
        keeper.bus.unsubscribe(second)
        assert keeper.log.listeners == []
    finally:
        await keeper.stop(grace=5.0)
