"""Runs that never started (refused by the quota, skipped by overlap) go through the same
bookkeeping as runs that ended: keeper log, metrics, Dashboard.md, the job's last result,
events. And a refused slot's record carries the slot's time, so a restart sees it taken
care of. Real keepers, real processes, real files."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import time
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from conftest import (
    final_records,
    finals,
    finish,
    keeper_log,
    run_cli,
    started_keeper,
    until,
    wait_for,
)

from watchkeeper.core import tuning
from watchkeeper.core.config import load_config
from watchkeeper.core.keeper import Keeper
from watchkeeper.core.lock import acquire

SKIPPED_SERIES = 'watchkeeper_runs_total{job_name="limited",status="skipped"}'


def metrics_text(vault: Path) -> str:
    path = vault / "Logs" / "metrics.prom"
    return path.read_text() if path.exists() else ""


def skipped_count(vault: Path) -> int:
    found = re.search(re.escape(SKIPPED_SERIES) + r" (\d+)", metrics_text(vault))
    return int(found.group(1)) if found else 0


def test_a_run_the_quota_refused_is_logged_counted_and_shown_as_the_last_result(
    make_vault, daemon
) -> None:
    vault = make_vault(
        """
        [jobs.limited]
        command = ["true"]
        every = "300ms"
        max_per_hour = 1
        """
    )
    process = daemon(vault)
    refusal = "quota: job limited max_per_hour 1 reached"

    def refused() -> list[dict]:
        # (A slot while the first run is still going, on a busy box, is an overlap skip.)
        return [r for r in finals(vault, "limited") if (r["error"] or "").startswith(refusal)]

    skipped = wait_for(refused)
    assert isinstance(skipped, list)

    # A line in the keeper log for each refusal (what `logs -f` and the journal show).
    wait_for(lambda: f"run {skipped[0]['id']} of limited (schedule) skipped: " in keeper_log(vault))
    # metrics.prom and Dashboard.md go on being rewritten, counting the refusals.
    wait_for(lambda: skipped_count(vault) >= 2)
    dashboard = (vault / "Dashboard.md").read_text()
    runs = dashboard.split("\n## Last 10 runs\n", 1)[1].split("\n## ", 1)[0]
    assert "| limited | ↷ skipped |" in runs, runs

    # The keeper's own views give the refusal as the last result, as the files do.
    through_keeper = run_cli("jobs", "--json", "--vault", str(vault))
    assert f"through keeper pid {process.pid}" in through_keeper.stderr
    assert json.loads(through_keeper.stdout)[0]["last"]["status"] == "skipped"
    status = json.loads(run_cli("--status", "--json", "--vault", str(vault)).stdout)
    assert status["source"] == "keeper"
    assert status["jobs"][0]["last"]["status"] == "skipped"
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=20) == 0


async def test_a_refusal_reaches_subscribers_and_the_live_outputs(
    make_vault, monkeypatch: pytest.MonkeyPatch
) -> None:
    vault = make_vault(
        """
        [jobs.limited]
        command = ["true"]
        max_per_hour = 1
        [jobs.slow]
        command = ["sleep", "0.5"]
        """
    )
    monkeypatch.setattr(tuning, "OUTPUT_INTERVAL", 0.05)
    keeper = await started_keeper(vault)
    subscription = keeper.bus.subscribe()
    first = keeper.run_now("limited", trigger="schedule")
    assert await keeper.wait_idle(10)
    await until(lambda: 'status="success"} 1' in metrics_text(vault))
    refused = keeper.run_now("limited", trigger="schedule")
    slow = keeper.run_now("slow")
    overlapped = keeper.run_now("slow")  # overlap = skip
    assert await keeper.wait_idle(10)
    await until(lambda: skipped_count(vault) == 1)
    views = {view["name"]: view for view in keeper.snapshot()["jobs"]}
    await finish(keeper)

    finished = []
    while (event := subscription.get_nowait()) is not None:
        if event.kind == "run_finished":
            finished.append((event.data["id"], event.data["status"]))
    assert (refused, "skipped") in finished and (overlapped, "skipped") in finished
    assert (first, "success") in finished and (slow, "success") in finished
    last = views["limited"]["last"]
    assert last is not None and (last["id"], last["status"]) == (refused, "skipped")
    log = keeper_log(vault)
    assert f"run {refused} of limited (schedule) skipped: quota: " in log
    assert f"run {overlapped} of slow (manual) skipped: run {slow} still running" in log
    assert 'watchkeeper_runs_total{job_name="slow",status="skipped"} 1' in metrics_text(vault)
    # Never started: no duration observed for them.
    assert 'watchkeeper_run_duration_seconds_count{job_name="limited"} 1' in metrics_text(vault)


async def test_a_refused_cron_slot_carries_its_time_and_no_catch_up_follows_a_restart(
    make_vault,
) -> None:
    # One slot a minute, a few seconds from now; the quota is used up by a manual run, so
    # the slot is refused. A restart right after must not take it for a missed slot.
    soon = datetime.now().astimezone() + timedelta(seconds=3)  # or a minute later, if slow
    vault = make_vault(
        f"""
        [jobs.minutely]
        command = ["true"]
        cron = "{soon.second} * * * * *"
        max_per_hour = 1
        """
    )
    keeper = Keeper(load_config(vault / "watchkeeper.toml"), acquire(vault))
    await keeper.start()
    serving = asyncio.create_task(keeper.serve())
    keeper.run_now("minutely")  # manual: never refused, but it counts
    await until(lambda: any(r["status"] == "skipped" for r in finals(vault, "minutely")), 70)
    await finish(keeper, serving)
    skipped = next(r for r in finals(vault, "minutely") if r["status"] == "skipped")
    slot = datetime.fromisoformat(skipped["startedAt"])
    assert slot.microsecond == 0 and slot.second == soon.second, skipped["startedAt"]
    assert skipped["trigger"] == "schedule"

    before = set(final_records(vault))
    again = await started_keeper(vault)  # catch_up = "once": a missed slot would run now
    await asyncio.sleep(0.2)
    await finish(again)
    assert time.time() < slot.timestamp() + 60, "the next slot passed: the check proves nothing"
    new = [r for r in final_records(vault).values() if r["id"] not in before]
    assert new == []
    assert "catching up" not in keeper_log(vault)


async def test_quota_events_count_a_run_as_it_starts(
    make_vault, monkeypatch: pytest.MonkeyPatch
) -> None:
    vault = make_vault(
        """
        [keeper]
        max_runs_per_hour = 10
        [jobs.long]
        command = ["sleep", "30"]
        """
    )
    monkeypatch.setattr(tuning, "OUTPUT_INTERVAL", 0.1)
    keeper = await started_keeper(vault)
    subscription = keeper.bus.subscribe()
    run = keeper.run_now("long")

    def counted() -> bool:
        while (event := subscription.get_nowait()) is not None:
            if event.kind == "quota" and event.data["usage"][0]["used"] == 1:
                return True
        return False

    await until(counted, timeout=10)
    assert run in keeper.active  # the Quota pane shows it while it runs, not once it ended
    keeper.cancel(run)
    await finish(keeper)
