"""Whole flows with real processes and files: quotas across restarts, retries with backoff,
after-chains and their waves, reloads (file change and SIGHUP), hooks, secret masking,
Dashboard.md and metrics.prom, catch-up after downtime, pausing a running keeper."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import subprocess
import textwrap
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

from conftest import final_records, keeper_log, run_cli, wait_for, write_past_run

from watchkeeper.core.config import load_config
from watchkeeper.core.keeper import Keeper, StartRequest
from watchkeeper.core.lock import acquire
from watchkeeper.core.once import run_once

# ---- helpers ----------------------------------------------------------------------------


def toml(text: str) -> str:
    """A TOML basic string: JSON's escaping is TOML's for ASCII text."""
    return json.dumps(text)


def mark_hook(marks: Path, prefix: str = "") -> str:
    """A /bin/sh hook appending "$WATCHKEEPER_STATUS $WATCHKEEPER_JOB" to `marks`."""
    return toml(f'{prefix}echo "$WATCHKEEPER_STATUS $WATCHKEEPER_JOB" >> {marks}')


def records(vault: Path, job: str | None = None, status: str | None = None) -> list[dict]:
    """Final records (folded by id), oldest start first."""
    found = [
        record
        for record in final_records(vault).values()
        if record["status"] != "running"
        and (job is None or record["taskId"] == job)
        and (status is None or record["status"] == status)
    ]
    return sorted(found, key=lambda record: record["startedAt"])


def run_ids(vault: Path, job: str) -> set[str]:
    """Every run of `job` that has a line in history, running ones included."""
    return {run_id for run_id, record in final_records(vault).items() if record["taskId"] == job}


def last_line(text: str) -> int:
    """The number of the last line of `text`, which ends in a newline."""
    return text.count("\n")


def at(stamp: str) -> datetime:
    return datetime.fromisoformat(stamp)


def section(markdown: str, title: str) -> str:
    """The body of one `## title` section of Dashboard.md."""
    body = markdown.split(f"\n## {title}\n", 1)[1]
    return body.split("\n## ", 1)[0]


async def started_keeper(vault: Path) -> Keeper:
    keeper = Keeper(load_config(vault / "watchkeeper.toml"), acquire(vault))
    await keeper.start()
    return keeper


async def until(condition: Callable[[], object], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        await asyncio.sleep(0.02)


async def finish(keeper: Keeper) -> None:
    await keeper.stop(grace=5)
    assert keeper.lock is not None
    keeper.lock.release()


def stop_daemon(process: subprocess.Popen) -> None:
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=20) == 0


# ---- 1, 2: quotas -----------------------------------------------------------------------

JOB_REFUSAL = re.compile(r"quota: job limited max_per_hour 3 reached; next slot frees in 59m\d\ds")


async def test_job_quota_refuses_the_fourth_start_also_after_a_restart(make_vault, daemon) -> None:
    config = """
        [jobs.limited]
        command = ["true"]
        max_per_hour = 3
        """
    vault = make_vault(config)
    keeper = await started_keeper(vault)
    scheduled = []
    for _ in range(4):
        scheduled.append(keeper.submit(StartRequest("limited", "schedule")))
        assert await keeper.wait_idle(10)
    manual = keeper.run_now("limited")
    assert await keeper.wait_idle(10)
    usage = {scope["scope"]: scope for scope in keeper.snapshot_head()["quota"]}
    await finish(keeper)

    before = final_records(vault)
    assert [before[run_id]["status"] for run_id in scheduled] == ["success"] * 3 + ["skipped"]
    assert JOB_REFUSAL.fullmatch(before[scheduled[3]]["error"]), before[scheduled[3]]["error"]
    # Past the limit a manual run still starts, and it counts.
    assert (before[manual]["status"], before[manual]["trigger"]) == ("success", "manual")
    assert (usage["limited"]["used"], usage["limited"]["limit"]) == (4, 3)

    # A new keeper, a real process this time, rebuilds the window from history.
    (vault / "watchkeeper.toml").write_text(textwrap.dedent(config) + 'every = "100ms"\n')
    process = daemon(vault)
    wait_for(lambda: len([r for r in records(vault, "limited") if r["id"] not in before]) >= 2)
    stop_daemon(process)
    new = [record for record in records(vault, "limited") if record["id"] not in before]
    assert {record["status"] for record in new} == {"skipped"}
    assert all(JOB_REFUSAL.fullmatch(record["error"]) for record in new), new


async def test_global_quota_counts_runs_of_every_job(make_vault) -> None:
    vault = make_vault(
        """
        [keeper]
        max_runs_per_hour = 3
        [jobs.one]
        command = ["true"]
        [jobs.two]
        command = ["true"]
        """
    )
    keeper = await started_keeper(vault)
    order = ["one", "two", "one", "two", "one"]
    ids = []
    for job in order:
        ids.append(keeper.submit(StartRequest(job, "schedule")))
        assert await keeper.wait_idle(10)
    usage = {scope["scope"]: scope["used"] for scope in keeper.snapshot_head()["quota"]}
    await finish(keeper)
    folded = final_records(vault)
    assert [folded[run_id]["status"] for run_id in ids] == ["success"] * 3 + ["skipped"] * 2
    for run_id in ids[3:]:
        assert re.fullmatch(
            r"quota: max_runs_per_hour 3 reached; next slot frees in 59m\d\ds",
            folded[run_id]["error"],
        )
    assert usage == {"global": 3, "one": 2, "two": 1}


async def test_restart_rebuilds_the_quota_window_the_keeper_had(make_vault) -> None:
    """A queued run cancelled before it started never took a slot; after a restart it
    must not take one either."""
    vault = make_vault(
        """
        [jobs.slow]
        command = ["sleep", "0.3"]
        overlap = "queue"
        max_per_hour = 5
        """
    )
    keeper = await started_keeper(vault)
    keeper.run_now("slow")
    queued = keeper.run_now("slow")
    assert keeper.cancel(queued)
    assert await keeper.wait_idle(10)
    live = {scope["scope"]: scope["used"] for scope in keeper.snapshot_head()["quota"]}
    await finish(keeper)
    assert final_records(vault)[queued]["status"] == "cancelled"
    keeper = await started_keeper(vault)
    rebuilt = {scope["scope"]: scope["used"] for scope in keeper.snapshot_head()["quota"]}
    await finish(keeper)
    assert live == {"global": 1, "slow": 1}
    assert rebuilt == live


# ---- 3: retries -------------------------------------------------------------------------


async def test_retries_back_off_with_full_jitter_under_the_cap(make_vault) -> None:
    vault = make_vault(
        """
        [jobs.flaky]
        command = ["sh", "-c", "exit 3"]
        retries = 2
        retry_delay = "100ms"
        """
    )
    keeper = await started_keeper(vault)
    keeper.run_now("flaky")
    await until(lambda: len(records(vault, "flaky")) == 3)
    assert await keeper.wait_idle(5) and not keeper.pending_timers
    await finish(keeper)
    runs = sorted(records(vault, "flaky"), key=lambda record: record["attempt"])
    assert [(r["attempt"], r["trigger"], r["status"]) for r in runs] == [
        (1, "manual", "failure"),
        (2, "retry", "failure"),
        (3, "retry", "failure"),
    ]
    announced = {
        int(attempt): int(ms)
        for attempt, ms in re.findall(
            r"flaky: attempt \d failure; retry (\d) of 3 in (\d+)ms", keeper_log(vault)
        )
    }
    assert set(announced) == {2, 3}
    for attempt in (2, 3):
        cap_ms = 100 * 2 ** (attempt - 2)  # retry_delay * 2^(n-1) after attempt n
        assert 0 <= announced[attempt] <= cap_ms
        gap = at(runs[attempt - 1]["startedAt"]) - at(runs[attempt - 2]["completedAt"])
        gap_ms = gap.total_seconds() * 1000
        # History stamps are truncated to the millisecond; the loop adds a little latency,
        # a busy 2-core box (the suite under xdist beside a benchmark) some hundred ms.
        assert announced[attempt] - 2 <= gap_ms <= announced[attempt] + 500


# ---- 4: chains and waves ----------------------------------------------------------------

CHAINS = """
    [jobs.a]
    command = ["sleep", "0.1"]
    every = "1h"
    [jobs.b]
    command = ["sleep", "0.1"]
    after = ["a"]
    [jobs.c]
    command = ["true"]
    after = ["b"]
    [jobs.x]
    command = ["true"]
    every = "1h"
    [jobs.d]
    command = ["true"]
    after = ["a", "x"]
    """


def one_each(vault: Path) -> dict[str, dict]:
    by_job: dict[str, dict] = {}
    for record in records(vault):
        assert record["taskId"] not in by_job, f"{record['taskId']} ran twice"
        by_job[record["taskId"]] = record
    return by_job


async def test_chain_runs_in_order_and_a_join_fires_when_both_succeed_in_one_wave(
    make_vault,
) -> None:
    vault = make_vault(CHAINS)
    keeper = await started_keeper(vault)
    assert sorted(await run_once(keeper)) == ["a", "x"]
    await finish(keeper)
    runs = one_each(vault)
    assert set(runs) == {"a", "b", "c", "x", "d"}
    assert {runs[job]["status"] for job in runs} == {"success"}
    assert [runs[job]["trigger"] for job in "bcd"] == ["after"] * 3
    assert at(runs["b"]["startedAt"]) >= at(runs["a"]["completedAt"])
    assert at(runs["c"]["startedAt"]) >= at(runs["b"]["completedAt"])
    assert at(runs["d"]["startedAt"]) >= max(at(runs[j]["completedAt"]) for j in "ax")


async def test_a_join_does_not_fire_on_successes_from_separate_waves(make_vault) -> None:
    vault = make_vault(CHAINS)
    keeper = await started_keeper(vault)
    keeper.run_now("a")
    assert await keeper.wait_idle(10)
    keeper.run_now("x")
    assert await keeper.wait_idle(10)
    separate = one_each(vault)
    # Those two waves together fire nothing later either: one wave with both fires d once.
    await run_once(keeper)
    await finish(keeper)
    assert set(separate) == {"a", "b", "c", "x"}
    assert [record["trigger"] for record in records(vault, "d")] == ["after"]


# ---- 5: reload --------------------------------------------------------------------------

TICK = textwrap.dedent(
    """\
    [jobs.tick]
    command = ["true"]
    every = "150ms"
    """
)
FRESH = textwrap.dedent(
    """\
    [jobs.fresh]
    command = ["true"]
    every = "150ms"
    """
)


def test_reload_keeps_the_running_config_on_a_bad_file_and_applies_a_good_one(
    make_vault, daemon
) -> None:
    vault = make_vault(TICK)
    path = vault / "watchkeeper.toml"
    process = daemon(vault)
    wait_for(lambda: len(records(vault, "tick")) >= 2)

    broken = TICK + "[jobs.broken\n"
    path.write_text(broken)
    refused = (
        "config reload (the config file changed) refused, keeping the running config: "
        f"{path}:{last_line(broken)}: <toml>: TOML syntax error"
    )
    wait_for(lambda: refused in keeper_log(vault))
    seen = run_ids(vault, "tick")
    wait_for(lambda: len(run_ids(vault, "tick") - seen) >= 3)

    path.write_text(TICK + FRESH)
    wait_for(lambda: "config reloaded (the config file changed): 2 job(s)" in keeper_log(vault))
    wait_for(lambda: len(records(vault, "fresh")) >= 2)
    assert {record["trigger"] for record in records(vault, "fresh")} == {"schedule"}

    unknown = TICK + FRESH + 'colour = "red"\n'
    path.write_text(unknown)
    located = f"{path}:{last_line(unknown)}: jobs.fresh.colour: unknown key 'colour'"
    wait_for(
        lambda: (
            f"(the config file changed) refused, keeping the running config: {located}"
            in keeper_log(vault)
        )
    )
    process.send_signal(signal.SIGHUP)
    wait_for(
        lambda: f"(SIGHUP) refused, keeping the running config: {located}" in keeper_log(vault)
    )
    seen = run_ids(vault, "fresh")
    wait_for(lambda: len(run_ids(vault, "fresh") - seen) >= 2)

    path.write_text(TICK + FRESH)
    wait_for(lambda: keeper_log(vault).count("config reloaded (the config file changed)") == 2)
    process.send_signal(signal.SIGHUP)
    wait_for(lambda: "config reloaded (SIGHUP): 2 job(s)" in keeper_log(vault))
    assert process.poll() is None
    stop_daemon(process)
    assert keeper_log(vault).count("keeper started") == 1


async def test_reload_dropping_a_job_that_waits_for_a_slot_keeps_the_keeper_working(
    make_vault,
) -> None:
    vault = make_vault(
        """
        [keeper]
        max_parallel = 1
        [jobs.blocker]
        command = ["sleep", "0.3"]
        [jobs.victim]
        command = ["true"]
        """
    )
    keeper = await started_keeper(vault)
    blocker = keeper.run_now("blocker")
    keeper.run_now("victim")
    assert keeper.snapshot()["waiting"] == 1
    (vault / "watchkeeper.toml").write_text('[jobs.blocker]\ncommand = ["sleep", "0.3"]\n')
    assert keeper.reload("test")
    idle = await keeper.wait_idle(3)
    await finish(keeper)
    assert final_records(vault)[blocker]["status"] == "success"
    assert records(vault, "victim", "success") == []
    assert idle, "the keeper never became idle once the removed job's turn came"


# ---- 6: hooks ---------------------------------------------------------------------------


async def test_hooks_get_the_status_and_their_outcome_is_logged(make_vault, tmp_path) -> None:
    marks = tmp_path / "marks"
    hooks = f"on_success = {mark_hook(marks)}\non_failure = {mark_hook(marks)}\n"
    vault = make_vault(
        f"""
[jobs.good]
command = ["true"]
{hooks}
[jobs.bad]
command = ["sh", "-c", "exit 4"]
{hooks}
[jobs.slow]
command = ["sleep", "5"]
timeout = "200ms"
{hooks}
[jobs.hookfails]
command = ["true"]
on_success = "exit 7"
"""
    )
    keeper = await started_keeper(vault)
    ids = {job: keeper.run_now(job) for job in ("good", "bad", "slow", "hookfails")}
    expected = [
        f"INFO  on_success hook of run {ids['good']} (good) success",
        f"INFO  on_failure hook of run {ids['bad']} (bad) success",
        f"INFO  on_failure hook of run {ids['slow']} (slow) success",
        f"WARN  on_success hook of run {ids['hookfails']} (hookfails) failure: exit code 7",
    ]
    await until(lambda: all(line in keeper_log(vault) for line in expected))
    await finish(keeper)
    assert sorted(marks.read_text().splitlines()) == ["failure bad", "success good", "timeout slow"]


def test_once_waits_for_hooks_and_logs_their_outcome(make_vault, tmp_path) -> None:
    marks = tmp_path / "marks"
    vault = make_vault(
        f"""
        [jobs.bad]
        command = ["sh", "-c", "exit 4"]
        every = "1h"
        on_failure = {mark_hook(marks, "sleep 0.3; ")}
        """
    )
    result = run_cli("--once", "--vault", str(vault))
    assert result.returncode == 1, result.stderr
    (run,) = records(vault, "bad")
    log = keeper_log(vault)
    hook_line = f"on_failure hook of run {run['id']} (bad) success"
    # Run at the time the keeper exits: a hook left running is an orphan whose outcome
    # nobody records.
    assert marks.exists() and marks.read_text() == "failure bad\n"
    assert hook_line in log, log
    assert log.index(hook_line) < log.index("keeper stopped")


# ---- 7: secrets -------------------------------------------------------------------------

SECRET = "tok-7c1d-SECRET-4242"


def assert_nowhere(vault: Path, secret: str) -> None:
    files = [path for path in (vault / "Logs").rglob("*") if path.is_file()]
    files.append(vault / "Dashboard.md")
    assert vault / "Logs" / "metrics.prom" in files
    for path in files:
        assert secret not in path.read_text(errors="replace"), path


async def test_secrets_reach_no_log_history_or_dashboard(make_vault, monkeypatch) -> None:
    monkeypatch.setenv("API_TOKEN", SECRET)
    hook = toml('echo "hook $WATCHKEEPER_JOB saw $API_TOKEN"')
    vault = make_vault(
        f"""
        [jobs.leaky]
        command = ["sh", "-c", "echo token=$API_TOKEN; echo stderr $API_TOKEN >&2; exit 1"]
        env = {{ API_TOKEN = "${{API_TOKEN}}" }}
        on_failure = {hook}
        [jobs.filer]
        command = ["sh", "-c", "echo files=$WATCHKEEPER_FILES token=$API_TOKEN; exit 1"]
        on_files = ["Inbox/*.md"]
        settle = "100ms"
        quarantine_after = 1
        env = {{ API_TOKEN = "${{API_TOKEN}}" }}
        on_failure = {hook}
        """
    )
    (vault / "Inbox" / "note.md").write_text("a task\n")
    keeper = await started_keeper(vault)
    leaky = keeper.run_now("leaky")
    await until(lambda: records(vault, "filer"))
    filer = records(vault, "filer")[0]["id"]
    await until(
        lambda: all(
            f"on_failure hook of run {run_id} ({job}) success" in keeper_log(vault)
            for run_id, job in ((leaky, "leaky"), (filer, "filer"))
        )
    )
    await finish(keeper)
    jobs = vault / "Logs" / "jobs"
    leaky_log, filer_log = (jobs / "leaky.log").read_text(), (jobs / "filer.log").read_text()
    assert "token=***" in leaky_log and "stderr ***" in leaky_log
    assert "hook leaky saw ***" in leaky_log
    assert "files=Inbox/note.md token=***" in filer_log and "hook filer saw ***" in filer_log
    assert (vault / "Needs_Action" / "note.md").exists()
    assert_nowhere(vault, SECRET)
    assert SECRET not in (vault / "Needs_Action" / "note.md.why.md").read_text()


async def test_hook_output_masks_secrets_from_the_env_file(make_vault) -> None:
    password = "pw-from-dotenv-3141"
    vault = make_vault(
        """
        [jobs.dotenv]
        command = ["sh", "-c", "echo run pw=$DB_PASSWORD; exit 1"]
        env_file = ".env"
        on_failure = ["sh", "-c", "echo hook pw=$DB_PASSWORD"]
        """
    )
    (vault / ".env").write_text(f"DB_PASSWORD={password}\n")
    keeper = await started_keeper(vault)
    run_id = keeper.run_now("dotenv")
    await until(lambda: f"on_failure hook of run {run_id} (dotenv) success" in keeper_log(vault))
    await finish(keeper)
    log = (vault / "Logs" / "jobs" / "dotenv.log").read_text()
    assert "run pw=***" in log
    assert "hook pw=" in log
    assert_nowhere(vault, password)


# ---- 8: Dashboard.md and metrics.prom -----------------------------------------------------


async def test_dashboard_and_metrics_are_written_after_runs(make_vault) -> None:
    vault = make_vault(
        """
        [jobs.ok]
        command = ["true"]
        [jobs.bad]
        command = ["sh", "-c", "exit 2"]
        [jobs.idle]
        command = ["true"]
        """
    )
    keeper = await started_keeper(vault)
    for job in ("ok", "ok", "bad", "ok"):
        keeper.run_now(job)
        assert await keeper.wait_idle(10)
    prom, dashboard = vault / "Logs" / "metrics.prom", vault / "Dashboard.md"
    counted = 'watchkeeper_runs_total{job_name="ok",status="success"} 3\n'
    await until(lambda: prom.exists() and counted in prom.read_text() and dashboard.exists())
    metrics, markdown = prom.read_text(), dashboard.read_text()
    await finish(keeper)

    assert 'watchkeeper_runs_total{job_name="bad",status="failure"} 1\n' in metrics
    assert [line for line in metrics.splitlines() if line.startswith("watchkeeper_runs_total")] == [
        'watchkeeper_runs_total{job_name="bad",status="failure"} 1',
        'watchkeeper_runs_total{job_name="ok",status="success"} 3',
    ]
    jobs = {row.split(" | ")[0].lstrip("| "): row for row in section(markdown, "Jobs").splitlines()}
    assert "✔ success" in jobs["ok"] and "✘ failure" in jobs["bad"]
    assert "success" not in jobs["idle"] and "failure" not in jobs["idle"]
    runs = section(markdown, "Last 10 runs")
    assert runs.count("| ok | ✔ success |") == 3 and runs.count("| bad | ✘ failure |") == 1
    leftovers = [p.name for d in (vault, vault / "Logs") for p in d.iterdir() if p.suffix == ".tmp"]
    assert leftovers == []


# ---- 9: catch-up ------------------------------------------------------------------------

CATCH_UP = """
    [keeper]
    timezone = "UTC"
    catch_up = "{mode}"
    [jobs.hourly]
    command = ["true"]
    every = "1h"
    [jobs.nightly]
    command = ["true"]
    cron = "0 3 * * *"
    [jobs.recent]
    command = ["true"]
    every = "1h"
    """


def past_vault(make_vault, mode: str) -> Path:
    vault = make_vault(CATCH_UP.format(mode=mode))
    write_past_run(vault, "hourly", timedelta(hours=2))
    write_past_run(vault, "nightly", timedelta(days=2))
    write_past_run(vault, "recent", timedelta(minutes=10))
    return vault


async def start_and_settle(vault: Path) -> None:
    keeper = await started_keeper(vault)
    assert await keeper.wait_idle(10)
    await finish(keeper)


async def test_catch_up_once_runs_each_missed_job_once(make_vault) -> None:
    vault = past_vault(make_vault, "once")
    await start_and_settle(vault)
    caught = [(r["taskId"], r["status"]) for r in records(vault) if r["trigger"] == "catch_up"]
    assert sorted(caught) == [("hourly", "success"), ("nightly", "success")]
    assert "hourly: a slot passed since its last run; catching up once" in keeper_log(vault)
    # The catch-up run is now the last run: a restart has nothing more to catch up.
    await start_and_settle(vault)
    assert [r["trigger"] for r in records(vault)].count("catch_up") == 2


async def test_catch_up_none_runs_nothing_at_start(make_vault) -> None:
    vault = past_vault(make_vault, "none")
    await start_and_settle(vault)
    assert sorted(record["id"] for record in records(vault)) == [
        "past-hourly",
        "past-nightly",
        "past-recent",
    ]


# ---- 10: pause through the CLI ----------------------------------------------------------


def test_cli_pause_and_resume_reach_a_running_daemon(make_vault, daemon) -> None:
    vault = make_vault(
        """
        [jobs.tick]
        command = ["true"]
        every = "150ms"
        [jobs.clock]
        command = ["true"]
        every = "150ms"
        """
    )
    process = daemon(vault)
    wait_for(lambda: len(records(vault, "tick")) >= 2)
    paused = run_cli("pause", "tick", "--vault", str(vault))
    assert paused.returncode == 0, paused.stderr
    assert paused.stdout == f"paused tick (through keeper pid {process.pid})\n"
    # The answer comes once the keeper has paused it: nothing of tick starts after this.
    during = run_ids(vault, "tick")
    clock = run_ids(vault, "clock")
    wait_for(lambda: len(run_ids(vault, "clock") - clock) >= 4)
    assert run_ids(vault, "tick") == during

    resumed = run_cli("resume", "tick", "--vault", str(vault))
    assert resumed.returncode == 0, resumed.stderr
    assert "tick  " in resumed.stdout and "one catch-up run -> starts" in resumed.stdout
    assert f"resumed tick (through keeper pid {process.pid})" in resumed.stdout
    wait_for(lambda: len(run_ids(vault, "tick") - during) >= 3)
    stop_daemon(process)
    triggers = [r["trigger"] for r in records(vault, "tick") if r["id"] not in during]
    # The slots missed while paused come back as one catch-up run, never as a burst.
    assert triggers.count("catch_up") == 1 and set(triggers) == {"schedule", "catch_up"}
