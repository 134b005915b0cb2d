"""Keys people already know, in every list; zoom, sort, search, wrap, edit, retry and the
command palette. The real app over a real keeper."""

from __future__ import annotations

import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from conftest import pilot_until as until
from console_kit import console, screen_text, select_job
from textual.widgets import DataTable

from watchkeeper.core.history import HistoryWriter, Query, RunRecord
from watchkeeper.tui.app import ConsoleApp
from watchkeeper.tui.main_screen import MainScreen
from watchkeeper.tui.screens.help import HelpScreen, all_keys
from watchkeeper.tui.widgets.log_view import LogView
from watchkeeper.tui.widgets.table import Table

MANY_JOBS = "".join(
    f'[jobs.job-{index:02d}]\ncommand = ["true"]\nmax_per_hour = {index + 1}\n'
    for index in range(30)
)


def write_history(vault: Path, runs: int) -> None:
    start = datetime.now(UTC) - timedelta(hours=2)
    writer = HistoryWriter(vault / "Logs" / "history")
    for index in range(runs):
        moment = start + timedelta(seconds=index)
        writer.append(
            RunRecord(
                id=f"run-{index:03d}",
                job=f"job-{index % 7:02d}",
                project="",
                started_at=moment,
                completed_at=moment,
                duration_ms=(index * 37) % 1000,
                status="success" if index % 3 else "failure",
                trigger="schedule",
                host="h",
            )
        )
    writer.close()


async def keys_move_the_cursor(pilot, table: Table) -> None:
    """j k g G home end ctrl+d ctrl+u pagedown pageup, on one table with focus."""
    table.focus()
    await pilot.press("g")
    assert table.cursor_row == 0
    await pilot.press("j", "j")
    assert table.cursor_row == 2
    await pilot.press("k")
    assert table.cursor_row == 1
    # The last row loaded (History reads its next page when the cursor gets there).
    last = table.row_count - 1
    await pilot.press("G")
    assert table.cursor_row == last
    await pilot.press("home")
    assert table.cursor_row == 0
    last = table.row_count - 1
    await pilot.press("end")
    assert table.cursor_row == last
    await pilot.press("g", "ctrl+d")
    half = table.cursor_row
    assert half >= 1
    await pilot.press("ctrl+d")
    assert table.cursor_row == min(2 * half, table.row_count - 1)
    await pilot.press("ctrl+u")
    assert table.cursor_row == half
    await pilot.press("g", "pagedown")
    page = table.cursor_row
    assert page > half
    await pilot.press("pageup")
    assert table.cursor_row == 0


async def test_list_keys_work_in_every_list(make_vault) -> None:
    vault = make_vault(MANY_JOBS)
    write_history(vault, 120)
    for index in range(12):
        (vault / "Inbox" / f"note-{index:02d}.md").write_text("# note\n")
    async with console(vault, size=(120, 40)) as (app, pilot, _client):
        main = app.main
        await until(pilot, lambda: main.history_pane.table.row_count > 20)
        await until(pilot, lambda: main.quota_pane.table.row_count > 20)
        await until(pilot, lambda: main.vault_pane.table.row_count > 8)
        for table in (
            main.jobs_pane.table,
            main.history_pane.table,
            main.vault_pane.table,
            main.quota_pane.table,
        ):
            await keys_move_the_cursor(pilot, table)


async def test_list_keys_scroll_the_log(make_vault) -> None:
    vault = make_vault('[jobs.a]\ncommand = ["true"]\n')
    (vault / "Logs" / "watchkeeper.log").write_text(
        "".join(f"2024-01-01T00:00:00.000+00:00 INFO  line {index}\n" for index in range(300))
    )
    async with console(vault, size=(80, 24)) as (app, pilot, _client):
        view = app.main.log_pane.view
        await until(pilot, lambda: view.line_count > 300)
        await pilot.press("4")
        # Following scrolls to the end after the refresh that lays the lines out, which a
        # loaded box may deliver a few frames later.
        await until(pilot, lambda: view.scroll_y == view.max_scroll_y > 0)
        assert view.follow
        await pilot.press("k")  # scrolling up stops following, and says so
        assert view.scroll_y == view.max_scroll_y - 1 and not view.follow
        assert "follow off" in screen_text(app)
        await pilot.press("g")
        assert view.scroll_y == 0
        await pilot.press("j", "j")
        assert view.scroll_y == 2
        await pilot.press("ctrl+d")
        half = view.scroll_y - 2
        assert half >= 2
        await pilot.press("ctrl+u", "pagedown")
        assert view.scroll_y > 2 + half
        await pilot.press("home", "G")
        assert view.scroll_y == view.max_scroll_y
        await pilot.press("f")
        assert view.follow


async def test_z_zooms_the_focused_pane_and_back(make_vault) -> None:
    vault = make_vault(MANY_JOBS)
    async with console(vault, size=(120, 40)) as (app, pilot, _client):
        main = app.main
        await pilot.press("3")
        before = main.history_pane.region
        await pilot.press("z")
        await until(pilot, lambda: main.maximized is main.history_pane)
        await pilot.pause(0.1)
        zoomed = main.history_pane.region
        assert zoomed.height >= 36 and zoomed.width == 120
        assert "3 History" in screen_text(app) and "1 Jobs" not in screen_text(app)
        await pilot.press("z")
        await until(pilot, lambda: main.maximized is None)
        await pilot.pause(0.1)
        assert main.history_pane.region == before
        await pilot.press("4", "z")
        await until(pilot, lambda: main.maximized is main.log_pane)
        await pilot.press("escape")
        await until(pilot, lambda: main.maximized is None)


async def test_s_sorts_jobs_and_history_by_column(make_vault) -> None:
    vault = make_vault(
        '[jobs.zeta]\ncommand = ["true"]\ncron = "0 3 * * *"\n'
        '[jobs.alpha]\ncommand = ["true"]\nevery = "1h"\n'
        '[jobs.mid]\ncommand = ["true"]\n'
    )
    write_history(vault, 10)
    async with console(vault) as (app, pilot, _client):
        jobs = app.main.jobs_pane.table
        assert jobs.row_keys() == ["zeta", "alpha", "mid"]  # the config's order
        await pilot.press("1", "s")
        assert jobs.row_keys() == ["alpha", "mid", "zeta"]
        assert "JOB▲" in screen_text(app)
        await pilot.press("S")
        assert jobs.row_keys() == ["zeta", "mid", "alpha"]
        await pilot.press("s")  # by trigger: cron…, every…, manual
        assert jobs.row_keys() == ["zeta", "alpha", "mid"]
        history = app.main.history_pane
        await until(pilot, lambda: history.table.row_count == 10)
        newest_first = history.table.row_keys()
        assert newest_first == [f"run-{index:03d}" for index in range(9, -1, -1)]
        await pilot.press("3", "s")  # by job
        by_job = [history.by_id[key]["taskId"] for key in history.table.row_keys()]
        assert by_job == sorted(by_job)
        await pilot.press("s")  # by status
        statuses = [history.by_id[key]["status"] for key in history.table.row_keys()]
        assert statuses == sorted(statuses)
        await pilot.press("s", "s", "s")  # duration, trigger, and back to newest first
        assert history.table.row_keys() == newest_first


async def test_slash_searches_the_log_and_n_moves_between_matches(make_vault) -> None:
    vault = make_vault('[jobs.a]\ncommand = ["true"]\n')
    lines = [f"2024-01-01T00:00:00.000+00:00 INFO  filler {index}\n" for index in range(200)]
    for index in (20, 90, 150):
        lines[index] = f"2024-01-01T00:00:00.000+00:00 INFO  the NEEDLE number {index}\n"
    (vault / "Logs" / "watchkeeper.log").write_text("".join(lines))
    async with console(vault, size=(100, 30)) as (app, pilot, _client):
        view = app.main.log_pane.view
        await until(pilot, lambda: view.line_count > 200)
        await pilot.press("4", "slash", *"needle", "enter")
        await until(pilot, lambda: view.position() == (3, 3))
        assert not view.follow and view.has_focus
        text = screen_text(app)
        assert "NEEDLE number 150" in text and "/needle 3/3" in text
        await pilot.press("n")  # past the newest: round to the oldest
        assert view.position() == (1, 3)
        assert "NEEDLE number 20" in screen_text(app)
        await pilot.press("n")
        assert view.position() == (2, 3)
        await pilot.press("N", "N")
        assert view.position() == (3, 3)
        await pilot.press("slash", "escape")  # the search is cleared
        assert view.position() is None
        assert "/needle" not in screen_text(app)


async def test_w_wraps_long_log_lines_or_not(make_vault) -> None:
    vault = make_vault('[jobs.a]\ncommand = ["true"]\n')
    long_line = "begin " + "x" * 150 + " the-outcome"
    (vault / "Logs" / "watchkeeper.log").write_text(
        f"2024-01-01T00:00:00.000+00:00 INFO  {long_line}\n"
    )
    async with console(vault, size=(100, 40)) as (app, pilot, _client):
        view = app.main.log_pane.view
        await until(pilot, lambda: any("the-outcome" in line for line in view.lines))
        await until(pilot, lambda: "the-outcome" in screen_text(app))  # wrapped: all shown
        await pilot.press("4", "w")
        await until(pilot, lambda: "the-outcome" not in screen_text(app))
        assert "no wrap" in screen_text(app)
        await pilot.press("end", *["right"] * 12)
        await until(pilot, lambda: "the-outcome" in screen_text(app))  # scrolled sideways
        await pilot.press("w")
        for size in ((90, 40), (140, 40), (100, 40)):  # laid out again for each width
            await pilot.resize_terminal(*size)
            await until(pilot, lambda: "the-outcome" in screen_text(app))


EDITOR = """#!/bin/sh
# A real editor's effect: the file gains a line.
printf '\\n[jobs.added-by-editor]\\ncommand = ["true"]\\n' >> "$1"
"""


@pytest.fixture
def editor(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    script = tmp_path / "editor.sh"
    script.write_text(EDITOR)
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    monkeypatch.delenv("VISUAL", raising=False)
    monkeypatch.setenv("EDITOR", str(script))
    return script


async def test_e_edits_the_config_and_the_console_reads_it_again(make_vault, editor) -> None:
    vault = make_vault('[jobs.a]\ncommand = ["true"]\n')
    async with console(vault) as (app, pilot, _client):
        await pilot.press("1", "e")
        assert "added-by-editor" in (vault / "watchkeeper.toml").read_text()
        # The keeper reloads it; the console's own copy follows.
        await until(pilot, lambda: "added-by-editor" in app.model.jobs, timeout=15)
        await until(pilot, lambda: "added-by-editor" in app.config.jobs)


async def test_e_edits_the_selected_vault_file(make_vault, editor) -> None:
    vault = make_vault('[jobs.a]\ncommand = ["true"]\n')
    note = vault / "Inbox" / "note.md"
    note.write_text("# A note\n")
    async with console(vault) as (app, pilot, _client):
        table = app.main.vault_pane.table
        await until(pilot, lambda: "Inbox/note.md" in [key.value for key in table.rows])
        await pilot.press("2")
        table.move_cursor(row=table.get_row_index("Inbox/note.md"))
        await pilot.press("e")
        assert note.read_text().startswith("# A note\n") and "added-by-editor" in note.read_text()
        assert "added-by-editor" not in (vault / "watchkeeper.toml").read_text()


async def test_capital_r_runs_a_failed_runs_job_again(make_vault) -> None:
    vault = make_vault(
        '[jobs.flaky]\ncommand = ["sh", "-c", "exit 1"]\n[jobs.fine]\ncommand = ["true"]\n'
    )
    async with console(vault) as (app, pilot, client):
        failed = client.run_now("flaky")
        fine = client.run_now("fine")
        history = app.main.history_pane
        await until(
            pilot,
            lambda: (
                history.by_id.get(failed, {}).get("status") == "failure"
                and history.by_id.get(fine, {}).get("status") == "success"
            ),
        )
        await pilot.press("3")
        history.table.move_to_key(fine)
        await pilot.press("R")  # not a failed run: nothing runs
        await pilot.pause(0.5)
        assert len(client.history(Query(job="fine")).records) == 1
        history.table.move_to_key(failed)
        await pilot.press("R")
        await until(pilot, lambda: len(client.history(Query(job="flaky")).records) == 2)
        again = client.history(Query(job="flaky")).records[0]
        assert again.id != failed and again.trigger == "manual"
        # In the Jobs pane R is the params form; a job without params runs at once, as r.
        await select_job(pilot, app, "flaky")
        await until(pilot, lambda: (app.model.jobs["flaky"].last or {}).get("id") == again.id)
        await until(pilot, lambda: (app.model.jobs["flaky"].last or {}).get("status") == "failure")
        await pilot.press("R")
        await until(pilot, lambda: len(client.history(Query(job="flaky")).records) == 3)


def palette_titles(app: ConsoleApp) -> list[str]:
    return [command.title for command in app.get_system_commands(app.main)]


async def test_palette_lists_each_jobs_actions_short_titles_and_one_theme_picker(
    make_vault,
) -> None:
    vault = make_vault(
        '[jobs.heartbeat]\ncommand = ["true"]\n[jobs.nightly-report]\ncommand = ["true"]\n'
    )
    async with console(vault) as (app, pilot, client):
        titles = palette_titles(app)
        for title in ("Run heartbeat", "Pause nightly-report", "Show heartbeat", "Theme", "Help"):
            assert title in titles, title
        assert titles.count("Theme") == 1 and "Keys" not in titles
        assert all(len(title) <= 30 for title in titles), titles
        helps = {command.title: command.help for command in app.get_system_commands(app.main)}
        assert helps["Zoom"].endswith("(z)") and helps["Params"].endswith("(R)")
        # Through the palette itself: pause a job by name.
        await pilot.press("ctrl+p")
        await pilot.press(*"pause nightly")
        await pilot.pause(0.3)
        await pilot.press("enter")
        await until(pilot, lambda: client.snapshot()["jobs"][1]["paused"])
        await until(pilot, lambda: "Resume nightly-report" in palette_titles(app))


async def test_help_lists_every_key_and_fits_80x24(make_vault) -> None:
    vault = make_vault('[jobs.a]\ncommand = ["true"]\n')
    async with console(vault, size=(80, 24)) as (app, pilot, _client):
        await pilot.press("question_mark")
        await until(pilot, lambda: isinstance(app.screen, HelpScreen))
        await pilot.pause(0.2)
        scroll = app.screen.query_one("#help-scroll")
        assert scroll.max_scroll_y == 0  # nothing below the fold
        named = all_keys() | {"pageup", "pagedown", "slash", "1", "2", "3", "4", "5"}
        for binding in MainScreen.BINDINGS + DataTable.BINDINGS + Table.BINDINGS:
            key = getattr(binding, "key", "")
            for one in key.split(","):
                if one in ("right", "left", "ctrl+home", "ctrl+end", "up", "down"):
                    continue  # the arrows are what everyone tries first
                assert one in named, one
        for key in ("j", "k", "g", "G", "ctrl+d", "ctrl+u", "pgdn", "pgup", "home", "end"):
            assert key in named
        for binding in LogView.BINDINGS:
            for one in getattr(binding, "key", "").split(","):
                assert one in named or one in ("up", "down", "left", "right"), one
        text = screen_text(app)
        assert "ctrl+d" in text and "zoom the pane" in text
