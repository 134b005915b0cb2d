"""The console attached to a keeper in another process (`--daemon`), the resume preview,
and taking over when the attached keeper goes away. Two real processes each time."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest
from conftest import final_records, run_cli, wait_for
from conftest import pilot_until as until
from console_kit import cell
from textual.widgets import DataTable

from watchkeeper.core.client import InProcessClient, SocketClient
from watchkeeper.core.config import load_config
from watchkeeper.core.lock import acquire, holder
from watchkeeper.core.state import load_state
from watchkeeper.tui.app import ConsoleApp, make_app
from watchkeeper.tui.screens.confirm import ConfirmScreen
from watchkeeper.tui.screens.resume import ResumeScreen
from watchkeeper.tui.themes import shipped_dir
from watchkeeper.tui.widgets.header import HeaderBar
from watchkeeper.tui.widgets.jobs_pane import JobsPane

JOBS = """
[jobs.tick]
command = ["true"]
every = "150ms"
[jobs.clock]
command = ["true"]
every = "150ms"
[jobs.by-hand]
command = ["sh", "-c", "echo by-hand-ran"]
"""


def runs_of(vault: Path, job: str) -> list[dict]:
    return [record for record in final_records(vault).values() if record["taskId"] == job]


def header(app: ConsoleApp) -> str:
    shown = app.main.query_one(HeaderBar).shown
    return shown.plain if shown is not None else ""


def owned(app: ConsoleApp) -> InProcessClient:
    client = app.client
    assert isinstance(client, InProcessClient)
    return client


async def select_job(pilot, app: ConsoleApp, name: str) -> None:
    await pilot.press("1")
    table = app.main.query_one("#jobs", DataTable)
    table.move_cursor(row=table.get_row_index(name))
    await until(pilot, lambda: app.main.query_one(JobsPane).selected == name)


async def test_attached_console_sees_cli_runs_pauses_the_daemon_and_leaves_it_running(
    make_vault, daemon
) -> None:
    vault = make_vault(JOBS)
    process = daemon(vault)
    config = load_config(vault / "watchkeeper.toml")
    app = make_app(config, theme_dirs=[shipped_dir()])
    assert isinstance(app.client, SocketClient) and app.client.pid == process.pid
    async with app.run_test(size=(120, 40)) as pilot:
        await until(pilot, lambda: app.keeper_started and len(app.model.jobs) == 3)
        await until(pilot, lambda: f"ATTACHED pid {process.pid}" in header(app))

        # A run started from the CLI shows up here through the event stream.
        started = run_cli("run", "by-hand", "--vault", str(vault))
        assert started.returncode == 0 and f"(through keeper pid {process.pid})" in started.stdout
        await until(pilot, lambda: cell(app, "by-hand", "last").startswith("✔ success"))

        # p here pauses the job in the daemon, which then starts no more of it.
        await select_job(pilot, app, "tick")
        await pilot.press("p")
        wait_for(lambda: "tick" in load_state(vault).paused_jobs)
        # Once the state file says so the daemon has paused it: tick starts no more.
        during = {record["id"] for record in runs_of(vault, "tick")}
        clock = {record["id"] for record in runs_of(vault, "clock")}
        wait_for(lambda: len({r["id"] for r in runs_of(vault, "clock")} - clock) >= 4)
        assert {record["id"] for record in runs_of(vault, "tick")} == during
        jobs = run_cli("jobs", "--json", "--vault", str(vault))
        assert f"through keeper pid {process.pid}" in jobs.stderr
        assert next(job for job in json.loads(jobs.stdout) if job["name"] == "tick")["paused"]

        await pilot.press("q")
        await until(pilot, lambda: app.closed)
    assert process.poll() is None, "quitting an attached console stopped the keeper"
    assert (holder(vault) or {}).get("pid") == process.pid


async def test_console_offers_to_take_over_when_the_attached_keeper_goes_away(
    make_vault, daemon
) -> None:
    vault = make_vault(JOBS)
    process = daemon(vault)
    config = load_config(vault / "watchkeeper.toml")
    app = make_app(config, theme_dirs=[shipped_dir()])
    async with app.run_test(size=(100, 30)) as pilot:
        await until(pilot, lambda: app.keeper_started and len(app.model.jobs) == 3)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=20) == 0
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        screen = app.screen
        assert isinstance(screen, ConfirmScreen)
        assert "went away" in screen.question and "STOPPED" in header(app)
        await pilot.press("y")
        await until(pilot, lambda: app.client.mode == "owner" and app.keeper_started)
        assert (holder(vault) or {}).get("pid") == os.getpid()
        await until(pilot, lambda: "RUNNING" in header(app) and "ATTACHED" not in header(app))
        count = len(runs_of(vault, "tick"))
        wait_for(lambda: len(runs_of(vault, "tick")) > count + 2)  # it schedules now
        await pilot.press("q")
        await until(pilot, lambda: app.closed)
    assert holder(vault) is None


async def owner_app(vault: Path) -> ConsoleApp:
    config = load_config(vault / "watchkeeper.toml")
    return make_app(config, InProcessClient(config, acquire(vault)), theme_dirs=[shipped_dir()])


@pytest.mark.parametrize("choice", ["with", "without"])
async def test_resume_shows_what_would_fire_and_resumes_with_or_without_missed_runs(
    make_vault, choice: str
) -> None:
    vault = make_vault(JOBS)
    app = await owner_app(vault)
    async with app.run_test(size=(120, 40)) as pilot:
        await until(pilot, lambda: app.keeper_started and len(app.model.jobs) == 3)
        await select_job(pilot, app, "tick")
        await pilot.press("p")
        keeper = owned(app).keeper
        # Under load a run from before the pause may still be ending; with it in flight the
        # catch-up run would be skipped (overlap = skip), which is another test's story.
        await until(
            pilot,
            lambda: keeper.jobs["tick"].missed_while_paused >= 2 and not keeper.jobs["tick"].active,
        )
        await pilot.press("p")
        await until(pilot, lambda: isinstance(app.screen, ResumeScreen))
        screen = app.screen
        assert isinstance(screen, ResumeScreen)
        plan = screen.plan
        assert [(run.job, run.kind, run.outcome) for run in plan.runs] == [
            ("tick", "missed", "starts")
        ]
        await pilot.press("w" if choice == "with" else "o")
        await until(pilot, lambda: not keeper.state.is_paused("tick"))
        await until(pilot, lambda: len(runs_of(vault, "tick")) >= 2)
        catch_up = [r for r in runs_of(vault, "tick") if r["trigger"] == "catch_up"]
        assert len(catch_up) == (1 if choice == "with" else 0)
        await pilot.press("q")
        await until(pilot, lambda: app.closed)


async def test_resume_with_nothing_piled_up_asks_nothing(make_vault) -> None:
    vault = make_vault(JOBS)
    app = await owner_app(vault)
    async with app.run_test(size=(120, 40)) as pilot:
        await until(pilot, lambda: app.keeper_started and len(app.model.jobs) == 3)
        await select_job(pilot, app, "by-hand")
        await pilot.press("p")
        await until(pilot, lambda: owned(app).keeper.state.is_paused("by-hand"))
        await pilot.press("p")
        await until(pilot, lambda: not owned(app).keeper.state.is_paused("by-hand"))
        assert not isinstance(app.screen, ResumeScreen)
        await pilot.press("q")
        await until(pilot, lambda: app.closed)


async def test_attached_console_subscribes_again_when_its_stream_is_cut(make_vault, daemon) -> None:
    # A keeper drops a subscriber that stalls; the same keeper still being there, the
    # console reconnects and resyncs instead of offering to take over.
    vault = make_vault(JOBS)
    process = daemon(vault)
    app = make_app(load_config(vault / "watchkeeper.toml"), theme_dirs=[shipped_dir()])
    async with app.run_test(size=(120, 40)) as pilot:
        await until(pilot, lambda: app.keeper_started and len(app.model.jobs) == 3)
        client = app.client
        assert isinstance(client, SocketClient)
        first = client._events
        assert first is not None
        first.shutdown()
        await until(pilot, lambda: client._events is not first)
        started = run_cli("run", "by-hand", "--vault", str(vault))
        run_id = started.stdout.split()[2]
        await until(pilot, lambda: (app.model.jobs["by-hand"].last or {}).get("id") == run_id)
        assert not isinstance(app.screen, ConfirmScreen)
        assert f"ATTACHED pid {process.pid}" in header(app)
        await pilot.press("q")
        await until(pilot, lambda: app.closed)
    assert process.poll() is None
