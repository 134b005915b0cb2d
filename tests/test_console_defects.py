"""Console defects from issue 13, each shown on the real app over a real keeper."""

from __future__ import annotations

import os
import re
import signal
from pathlib import Path

from conftest import keeper_log, wait_for
from conftest import pilot_until as until
from console_kit import JOBS, console, header, log_key, screen_text, select_job
from textual.pilot import Pilot
from textual.widgets import DataTable

from watchkeeper.core.config import load_config
from watchkeeper.tui.app import ConsoleApp, make_app
from watchkeeper.tui.themes import shipped_dir

TICKER = """
[jobs.ticker]
command = ["true"]
every = "300ms"
"""
RUN_ID = re.compile(r"run (\S+) of ")


def run_ids(text: str) -> set[str]:
    return set(RUN_ID.findall(text))


async def shows_new_runs(pilot: Pilot, app: ConsoleApp, vault: Path, why: str) -> None:
    """A run that starts from now on reaches the Log pane on screen: it still follows."""
    known = run_ids(keeper_log(vault))
    wait_for(lambda: run_ids(keeper_log(vault)) - known, timeout=10)

    def fresh_on_screen() -> bool:
        return bool(run_ids(screen_text(app)) - known)

    try:
        await until(pilot, fresh_on_screen, timeout=10)
    except AssertionError:
        raise AssertionError(f"the Log pane stopped following {why}") from None


async def test_log_keeps_following_through_focus_moves_resizes_and_f_twice(make_vault) -> None:
    vault = make_vault(TICKER)
    async with console(vault, size=(80, 24)) as (app, pilot, _client):
        await shows_new_runs(pilot, app, vault, "at start")
        await pilot.press("4")
        await shows_new_runs(pilot, app, vault, "after 4")
        await pilot.press("1")
        await shows_new_runs(pilot, app, vault, "after 4 then 1")
        await pilot.resize_terminal(100, 30)
        await shows_new_runs(pilot, app, vault, "after growing the terminal")
        await pilot.resize_terminal(80, 24)
        await shows_new_runs(pilot, app, vault, "after shrinking the terminal")
        await pilot.press("f", "f")
        await shows_new_runs(pilot, app, vault, "after f twice")
        await pilot.press("3", "4", "2")
        await shows_new_runs(pilot, app, vault, "after moving around")
        assert "follow on" in screen_text(app)


def log_view_lines(app: ConsoleApp) -> list[str]:
    return list(app.main.log_pane.main().lines)


async def test_log_pane_shows_each_keeper_line_once_in_file_order(make_vault) -> None:
    # Busy from the first moment: the tail read at start and the live lines overlap.
    vault = make_vault(
        '[jobs.a]\ncommand = ["true"]\nevery = "100ms"\n'
        '[jobs.b]\ncommand = ["true"]\nevery = "150ms"\n'
    )

    async def as_in_the_file(pilot: Pilot, app: ConsoleApp, client) -> None:
        client.pause(None)
        await until(pilot, lambda: client.snapshot()["running"] == 0)

        def caught_up() -> bool:
            lines = log_view_lines(app)
            return bool(lines) and log_key(lines[-1]) == log_key(keeper_log(vault).splitlines()[-1])

        await until(pilot, caught_up)
        shown = [log_key(line) for line in log_view_lines(app)]
        in_file = [log_key(line) for line in keeper_log(vault).splitlines()]
        assert shown == in_file[-len(shown) :]
        assert sum("keeper started" in line for line in shown) == 1

    async with console(vault) as (app, pilot, client):
        await until(pilot, lambda: len(log_view_lines(app)) > 30)
        await as_in_the_file(pilot, app, client)
        client.resume(None)
        # Switching the Log to a job's log and back reads the keeper's tail again, live.
        await select_job(pilot, app, "a")
        await pilot.press("4", "enter")
        await until(pilot, lambda: app.main.log_pane.source == "a")
        await pilot.press("enter")
        await until(pilot, lambda: app.main.log_pane.source == "keeper")
        await as_in_the_file(pilot, app, client)


async def test_config_reload_warning_clears_after_a_good_reload(make_vault) -> None:
    vault = make_vault(JOBS)
    config = vault / "watchkeeper.toml"
    async with console(vault) as (app, pilot, _client):
        config.write_text(JOBS + "[jobs.broken]\ncommand = 5\n")
        await until(pilot, lambda: "config reload refused" in header(app), timeout=15)
        config.write_text(JOBS + '[jobs.fixed]\ncommand = ["true"]\n')
        await until(pilot, lambda: "fixed" in app.model.jobs, timeout=15)
        await until(pilot, lambda: "config reload refused" not in header(app))


async def test_config_reload_warning_clears_after_taking_over(make_vault, daemon) -> None:
    vault = make_vault(JOBS)
    config = vault / "watchkeeper.toml"
    process = daemon(vault)
    app = make_app(load_config(config), theme_dirs=[shipped_dir()])
    async with app.run_test(size=(120, 40)) as pilot:
        await until(pilot, lambda: app.keeper_started and len(app.model.jobs) == 3)
        config.write_text(JOBS + "[jobs.broken]\ncommand = 5\n")
        await until(pilot, lambda: "config reload refused" in header(app), timeout=15)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=20) == 0
        config.write_text(JOBS)
        await until(pilot, lambda: "went away" in screen_text(app))
        await pilot.press("y")
        await until(pilot, lambda: app.client.mode == "owner" and app.keeper_started)
        await until(pilot, lambda: "RUNNING" in header(app))
        assert "config reload refused" not in header(app)
        assert app.client.pid == os.getpid()
        await pilot.press("q")
        await until(pilot, lambda: app.closed)


async def test_no_stray_scrollbar_glyphs_in_panes_after_dialogs_and_toasts(
    make_vault, monkeypatch
) -> None:
    monkeypatch.setenv("NO_COLOR", "1")
    # Keeper-log lines wider than the Log pane: a horizontal scrollbar's thumb, its colour
    # gone, is left as a lone ▉ or ▏.
    vault = make_vault(JOBS, name="v" + "-wide" * 40)
    async with console(vault, size=(160, 48)) as (app, pilot, client):
        await select_job(pilot, app, "slow")
        await pilot.press("r")
        await until(pilot, lambda: client.snapshot()["running"] == 1)
        await pilot.press("x")
        await until(pilot, lambda: app.screen is not app.main)
        await pilot.press("n")
        await until(pilot, lambda: app.screen is app.main)
        await pilot.press("f", "f")
        await until(pilot, lambda: "follow log" not in screen_text(app))  # the toasts left
        body = screen_text(app).splitlines()[1:-1]  # the panes, not header or footer
        for glyph in "▉▊▋▌▍▎▏":
            assert not any(glyph in line for line in body), glyph


async def test_quota_pane_counts_a_run_as_the_header_does(make_vault) -> None:
    vault = make_vault(
        '[jobs.capped]\ncommand = ["true"]\nmax_per_hour = 50\n[jobs.other]\ncommand = ["true"]\n'
    )
    # Snapshots far apart: what the pane shows comes from the keeper's events.
    async with console(vault, snapshot_interval=60.0) as (app, pilot, client):
        table = app.main.query_one("#quota", DataTable)

        def used(scope: str) -> str:
            return str(table.get_cell(scope, "used")).strip() if scope in table.rows else ""

        async def one_more(count: int) -> None:
            client.run_now("capped")
            await until(pilot, lambda: app.model.today["ok"] == count)
            await until(pilot, lambda: f"✔ {count} ok" in header(app))
            await until(pilot, lambda: used("capped") == f"{count}/50", timeout=1.5)
            assert used("global") == f"{count}/∞"

        for count in range(1, 4):
            await one_more(count)
