"""The console, driven by Textual's Pilot over a real keeper on a real vault.

Each key is checked twice: in the keeper (snapshot, history) and on the screen.
"""

from __future__ import annotations

import os
import pty
import subprocess
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from conftest import CLI
from conftest import pilot_until as until
from console_kit import JOBS, cell, console, job_view, screen_text, select_job
from rich.text import Text
from textual.widgets import DataTable, Input

from watchkeeper.core.history import Query, RunRecord
from watchkeeper.core.lock import acquire, holder
from watchkeeper.core.state import load_state
from watchkeeper.tui.screens.confirm import ConfirmScreen
from watchkeeper.tui.screens.help import HelpScreen
from watchkeeper.tui.screens.job_details import JobScreen
from watchkeeper.tui.screens.quit import QuitScreen
from watchkeeper.tui.screens.run_output import RunOutputScreen
from watchkeeper.tui.screens.vault_file import VaultFileScreen
from watchkeeper.tui.themes import shipped_dir
from watchkeeper.tui.widgets.header import HeaderBar
from watchkeeper.tui.widgets.history_pane import HistoryPane
from watchkeeper.tui.widgets.jobs_pane import JobsPane
from watchkeeper.tui.widgets.log_pane import LogPane
from watchkeeper.tui.widgets.log_view import LogView
from watchkeeper.tui.widgets.pane import Pane

# ---- keys that act on the keeper ------------------------------------------------------


async def test_r_runs_the_selected_job(make_vault) -> None:
    vault = make_vault(JOBS)
    async with console(vault) as (app, pilot, client):
        await select_job(pilot, app, "quick")
        await pilot.press("r")
        await until(pilot, lambda: client.history(Query(job="quick")).records)
        record = client.history(Query(job="quick")).records[0]
        assert record.trigger == "manual"
        await until(pilot, lambda: cell(app, "quick", "last").startswith("✔ success"))


async def test_p_pauses_and_resumes_the_selected_job(make_vault) -> None:
    vault = make_vault(JOBS)
    async with console(vault) as (app, pilot, client):
        await select_job(pilot, app, "slow")
        await pilot.press("p")
        await until(pilot, lambda: job_view(client, "slow")["paused"])
        await until(pilot, lambda: cell(app, "slow", "state") == "⏸ paused")
        assert not job_view(client, "quick")["paused"]
        await pilot.press("p")
        await until(pilot, lambda: not job_view(client, "slow")["paused"])
        await until(pilot, lambda: cell(app, "slow", "state") == "")


async def test_shift_p_pauses_and_resumes_everything(make_vault) -> None:
    vault = make_vault(JOBS)
    async with console(vault) as (app, pilot, client):
        header = app.main.query_one(HeaderBar)
        await until(pilot, lambda: "RUNNING" in str(header.render()))
        await pilot.press("P")
        await until(pilot, lambda: client.snapshot()["paused"])
        await until(pilot, lambda: "⏸ PAUSED" in str(header.render()))
        await until(pilot, lambda: cell(app, "quick", "state") == "⏸ all")
        await pilot.press("P")
        await until(pilot, lambda: not client.snapshot()["paused"])
        await until(pilot, lambda: "● RUNNING" in str(header.render()))


async def test_x_cancels_the_selected_run_only_when_confirmed(make_vault) -> None:
    vault = make_vault(JOBS)
    async with console(vault) as (app, pilot, client):
        await select_job(pilot, app, "slow")
        await pilot.press("r")
        await until(pilot, lambda: cell(app, "slow", "state").startswith("▶"))
        await pilot.press("x")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        await pilot.press("n")
        await until(pilot, lambda: not isinstance(app.screen, ConfirmScreen))
        await pilot.pause(0.2)
        assert client.snapshot()["running"] == 1
        await pilot.press("x")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        await pilot.press("y")
        await until(pilot, lambda: client.snapshot()["running"] == 0)
        record = client.history(Query(job="slow")).records[0]
        assert record.status == "cancelled"
        await until(pilot, lambda: cell(app, "slow", "last").startswith("■ cancelled"))
        assert cell(app, "slow", "state") == ""


# ---- details ---------------------------------------------------------------------------


async def test_enter_on_a_history_row_shows_that_runs_output(make_vault) -> None:
    vault = make_vault(JOBS)
    async with console(vault) as (app, pilot, client):
        run_id = client.run_now("quick")
        await until(pilot, lambda: run_id in app.main.query_one(HistoryPane).by_id)
        await until(pilot, lambda: cell(app, "quick", "last").startswith("✔"))
        await pilot.press("3")
        history = app.main.query_one("#history", DataTable)
        await until(pilot, lambda: history.has_focus and history.row_count == 1)
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, RunOutputScreen))
        output = app.screen.query_one("#run-output", LogView)
        await until(pilot, lambda: any("hi-from-quick" in line for line in output.lines))
        assert run_id in screen_text(app)
        await pilot.press("escape")
        await until(pilot, lambda: app.screen is app.main)


async def test_enter_on_a_vault_item_previews_it_as_markdown(make_vault) -> None:
    vault = make_vault(JOBS)
    (vault / "Inbox" / "task.md").write_text("# Quarterly report\n\nPlease **summarise** it.\n")
    async with console(vault) as (app, pilot, _client):
        await pilot.press("2")
        table = app.main.query_one("#vault", DataTable)
        await until(pilot, lambda: "Inbox/task.md" in [key.value for key in table.rows])
        await pilot.press("down")
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, VaultFileScreen))
        await until(pilot, lambda: "Please summarise it." in screen_text(app))
        text = screen_text(app)
        assert "Quarterly report" in text and "# Quarterly" not in text  # rendered, not raw


async def test_enter_on_a_job_shows_its_config_and_next_five_fire_times(make_vault) -> None:
    vault = make_vault(JOBS)
    async with console(vault) as (app, pilot, _client):
        await select_job(pilot, app, "nightly")
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, JobScreen))
        await until(pilot, lambda: "next 5" in screen_text(app))
        text = screen_text(app)
        assert "cron 0 3 * * *" in text
        assert text.count("03:00:00") == 5


async def test_slash_filters_the_jobs_and_the_history(make_vault) -> None:
    vault = make_vault(JOBS)
    async with console(vault) as (app, pilot, client):
        table = app.main.query_one("#jobs", DataTable)
        await pilot.press("slash")
        await pilot.press("s", "l", "o")
        await until(pilot, lambda: [key.value for key in table.rows] == ["slow"])
        await pilot.press("enter")
        assert table.has_focus
        await pilot.press("slash", "escape")
        await until(pilot, lambda: table.row_count == 3)
        # In the History pane, / takes a job or a status.
        run_id = client.run_now("quick")
        history = app.main.query_one("#history", DataTable)
        await until(pilot, lambda: [key.value for key in history.rows] == [run_id])
        await pilot.press("3", "slash", *"slow")
        await until(pilot, lambda: history.row_count == 0)
        await pilot.press("escape")
        await until(pilot, lambda: history.row_count == 1)


async def test_tab_shift_tab_and_numbers_move_between_panes(make_vault) -> None:
    vault = make_vault(JOBS)
    async with console(vault) as (app, pilot, _client):

        def pane() -> str | None:
            focused = app.main.focused_pane()
            return focused.id if focused else None

        assert pane() == "jobs-pane"
        await pilot.press("tab")
        assert pane() == "vault-pane"
        await pilot.press("tab")
        assert pane() == "history-pane"
        await pilot.press("shift+tab", "shift+tab", "shift+tab")
        assert pane() == "quota-pane"
        for key, expected in zip(
            "12345",
            ("jobs-pane", "vault-pane", "history-pane", "log-pane", "quota-pane"),
            strict=True,
        ):
            await pilot.press(key)
            assert pane() == expected


async def test_f_toggles_following_the_log(make_vault) -> None:
    vault = make_vault(JOBS)
    async with console(vault) as (app, pilot, _client):
        log = app.main.query_one(LogPane)
        assert log.follow and log.main().follow
        await pilot.press("f")
        assert not log.follow and not log.main().follow
        await until(pilot, lambda: "follow off" in screen_text(app))
        await pilot.press("f")
        assert log.follow
        await until(pilot, lambda: "follow on" in screen_text(app))


async def test_question_mark_opens_the_help(make_vault) -> None:
    vault = make_vault(JOBS)
    async with console(vault) as (app, pilot, _client):
        await pilot.press("question_mark")
        await until(pilot, lambda: isinstance(app.screen, HelpScreen))
        text = screen_text(app)
        for words in ("pause or resume everything", "cancel the selected run", "ctrl+p"):
            assert words in text
        await pilot.press("escape")
        await until(pilot, lambda: app.screen is app.main)


# ---- quitting ---------------------------------------------------------------------------


async def test_q_with_a_run_in_flight_asks_and_stop_them_ends_it(make_vault) -> None:
    vault = make_vault(JOBS)
    async with console(vault) as (app, pilot, client):
        await select_job(pilot, app, "slow")
        await pilot.press("r")
        await until(pilot, lambda: cell(app, "slow", "state").startswith("▶"))
        await pilot.press("q")
        await until(pilot, lambda: isinstance(app.screen, QuitScreen))
        await pilot.press("c")
        await until(pilot, lambda: app.screen is app.main)
        assert client.snapshot()["running"] == 1
        await pilot.press("q")
        await until(pilot, lambda: isinstance(app.screen, QuitScreen))
        await pilot.press("s")
        await until(pilot, lambda: app.closed and holder(vault) is None)
    assert app.return_code == 0
    records = client.history(Query(job="slow")).records
    assert [record.status for record in records] == ["cancelled"]


async def test_q_wait_for_them_lets_the_run_finish(make_vault) -> None:
    vault = make_vault('[jobs.brief]\ncommand = ["sleep", "0.5"]\n')
    async with console(vault) as (app, pilot, client):
        await select_job(pilot, app, "brief")
        await pilot.press("r")
        await until(pilot, lambda: cell(app, "brief", "state").startswith("▶"))
        await pilot.press("q")
        await until(pilot, lambda: isinstance(app.screen, QuitScreen))
        await pilot.press("w")
        await until(pilot, lambda: app.closed and holder(vault) is None)
    records = client.history(Query(job="brief")).records
    assert [record.status for record in records] == ["success"]


async def test_q_again_while_waiting_for_runs_offers_to_stop_them(make_vault) -> None:
    vault = make_vault(
        '[keeper]\nshutdown_grace = "10m"\n[jobs.long]\ncommand = ["sleep", "600"]\n'
    )
    async with console(vault) as (app, pilot, client):
        await select_job(pilot, app, "long")
        await pilot.press("r")
        await until(pilot, lambda: cell(app, "long", "state").startswith("▶"))
        await pilot.press("q")
        await until(pilot, lambda: isinstance(app.screen, QuitScreen))
        await pilot.press("w")
        await until(pilot, lambda: app.screen is app.main and app.closing)
        await pilot.press("q")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        assert "1 run is still in flight. Stop now instead of waiting?" in screen_text(app)
        await pilot.press("y")
        await until(pilot, lambda: app.closed and holder(vault) is None)
    records = client.history(Query(job="long")).records
    assert [record.status for record in records] == ["cancelled"]


async def test_q_without_runs_quits_at_once(make_vault) -> None:
    vault = make_vault(JOBS)
    async with console(vault) as (app, pilot, _client):
        await pilot.press("q")
        await until(pilot, lambda: app.closed and holder(vault) is None)
        assert not isinstance(app.screen, QuitScreen)


# ---- themes -----------------------------------------------------------------------------


async def test_a_theme_chosen_in_the_palette_persists_and_comes_back(make_vault) -> None:
    vault = make_vault(JOBS)
    async with console(vault) as (app, pilot, client):
        assert app.theme == "watchkeeper-dark"
        await pilot.press("ctrl+p")
        await until(pilot, lambda: isinstance(app.screen.focused, Input))
        focused = app.screen.focused
        assert isinstance(focused, Input) and not focused.cursor_blink  # nothing blinks
        await pilot.press(*"theme")
        await pilot.pause(0.3)
        await pilot.press("enter")
        # One picker, ours: only watchkeeper's themes (and the operator's own) are offered.
        await until(pilot, lambda: "Theme…" in screen_text(app))
        await pilot.pause(0.3)
        text = screen_text(app)
        assert "watchkeeper-high-contrast" in text and "textual-dark" not in text
        await pilot.press(*"light")
        await pilot.pause(0.3)
        await pilot.press("enter")
        await until(pilot, lambda: app.theme == "watchkeeper-light")
        await until(pilot, lambda: load_state(vault).theme == "watchkeeper-light")
        # The keeper saves its state on a pause: the theme must survive that.
        await pilot.press("escape", "P")
        await until(pilot, lambda: client.snapshot()["paused"])
        await pilot.pause(0.3)
        await until(pilot, lambda: load_state(vault).theme == "watchkeeper-light")
    assert load_state(vault).paused
    async with console(vault) as (app, pilot, client):
        assert app.theme == "watchkeeper-light"


async def test_a_bad_user_theme_is_reported_and_skipped(make_vault, tmp_path: Path) -> None:
    vault = make_vault(JOBS)
    mine = tmp_path / "themes"
    mine.mkdir()
    (mine / "mine.toml").write_text('name = "mine"\nprimary = "#336699"\ndark = false\n')
    (mine / "broken.toml").write_text('name = "broken"\nprimary = "not-a-colour"\n')
    (mine / "sly.toml").write_text(
        'name = "sly"\nprimary = "#336699"\n[variables]\nfooter-key-foreground = "loud"\n'
    )
    async with console(vault, theme_dirs=[shipped_dir(), mine]) as (app, _pilot, _client):
        assert "mine" in app.available_themes
        assert "broken" not in app.available_themes
        assert "sly" not in app.available_themes  # its variable would break the CSS
        assert {"watchkeeper-light", "watchkeeper-high-contrast"} <= set(app.available_themes)
        messages = [notification.message for notification in app._notifications]
        assert any("broken.toml" in message and "primary" in message for message in messages)
        assert any(
            "sly.toml" in message and "footer-key-foreground" in message for message in messages
        )


# ---- scale and load -------------------------------------------------------------------


async def test_console_stays_responsive_while_the_keeper_is_busy(make_vault) -> None:
    vault = make_vault(
        """
        [keeper]
        max_parallel = 8
        [jobs.busy]
        command = ["true"]
        every = "50ms"
        overlap = "allow"
        [jobs.chatty]
        command = ["sh", "-c", "seq 1 3000"]
        every = "100ms"
        """
    )
    async with console(vault) as (app, pilot, client):
        history = app.main.query_one(HistoryPane)
        log = app.main.query_one(LogPane)
        # Show the chatty job's log: some 30,000 lines a second to take in.
        await select_job(pilot, app, "chatty")
        await pilot.press("4", "enter")
        await until(pilot, lambda: log.source == "chatty")
        await until(pilot, lambda: app.model.events > 500 and log.main().line_count > 1000)
        table = app.main.query_one("#jobs", DataTable)
        table.move_cursor(row=table.get_row_index("busy"))
        table.focus()
        # Pilot.press waits for the app to go idle, which a busy keeper never lets it:
        # post the key as a terminal would and time how long until its effect shows.
        start, flushes = time.monotonic(), app.flushes
        app.simulate_key("p")
        await until(pilot, lambda: cell(app, "busy", "state") == "⏸ paused", timeout=5)
        elapsed = time.monotonic() - start
        # Well under a second on a quiet box (bench/console.py measures it); the bound
        # leaves room for the suite under xdist beside a benchmark on 2 cores.
        assert elapsed < 3, elapsed
        # The cell shows the key's effect at once; the keeper's answer follows.
        await until(pilot, lambda: job_view(client, "busy")["paused"])
        # The redraw timer caps frames at ten a second, however many events came in.
        assert app.flushes - flushes <= elapsed / app.redraw_interval + 3
        redraws = sum(pane.redraws for pane in app.main.query(Pane))
        events = app.model.events
        assert redraws < events / 10, (redraws, events)
        # History holds one page however many runs there were.
        assert len(history.records) <= history.limit <= history.page() * 2


async def test_a_thousand_jobs_update_in_place(make_vault) -> None:
    vault = make_vault(
        "".join(f'[jobs.job-{index:04d}]\ncommand = ["true"]\n' for index in range(1000))
    )
    async with console(vault) as (app, pilot, client):
        jobs = app.main.query_one(JobsPane)
        rebuilds, cells = jobs.rebuilds, jobs.cells_updated
        client.run_now("job-0500")
        await until(pilot, lambda: cell(app, "job-0500", "last").startswith("✔ success"))
        await pilot.pause(0.3)
        # One row changed: its cells, not the table, were redrawn.
        assert jobs.rebuilds == rebuilds
        assert 1 <= jobs.cells_updated - cells <= 4
        assert jobs.main().row_count == 1000


async def test_history_reads_one_page_of_a_long_history(make_vault) -> None:
    vault = make_vault(JOBS)
    start = datetime.now(UTC) - timedelta(hours=2)
    lines = []
    for index in range(5000):
        moment = start + timedelta(seconds=index)
        record = RunRecord(
            id=f"old-{index:05d}",
            job="quick",
            project="vault",
            started_at=moment,
            status="success",
            trigger="schedule",
            host="h",
            completed_at=moment,
            duration_ms=5,
        )
        lines.append(record.to_line())
    (vault / "Logs" / "history" / f"{start.date().isoformat()}.jsonl").write_bytes(b"".join(lines))
    async with console(vault) as (app, pilot, _client):
        history = app.main.query_one(HistoryPane)
        table = app.main.query_one("#history", DataTable)
        await until(pilot, lambda: table.row_count > 0)
        # The first page: what the pane showed when it first had a size, and a margin
        # (the pane may have lost a row or two since, as the Jobs pane filled).
        first_page = history.limit
        assert table.row_count == len(history.records) == first_page
        assert history.page() <= first_page <= history.page() + 3
        assert history.reads == 1
        assert [record["id"] for record in history.records[:2]] == ["old-04999", "old-04998"]
        await pilot.press("3", "G")
        # At least one more page; on a loaded box the end key's scroll may land after the
        # page did and ask for one more: still a page at a time, never the whole file. A
        # page is what the pane shows when it is asked for, and the pane may lose a row
        # as the Jobs pane fills: so the rows are what the last read asked for.
        await until(pilot, lambda: table.row_count > first_page and not history._pending)
        assert first_page < table.row_count == history.limit < 5000
        assert history.limit <= first_page + (history.reads - 1) * (history.page() + 3)
        assert len(history.records) == table.row_count
        assert history.records[-1]["id"] == f"old-{5000 - table.row_count:05d}"


async def test_log_pane_opens_a_big_log_at_its_tail(make_vault) -> None:
    vault = make_vault(JOBS)
    log_path = vault / "Logs" / "watchkeeper.log"
    block = b"".join(
        b"2024-01-01T00:00:00.000+00:00 INFO  filler line %06d\n" % index for index in range(20000)
    )
    with log_path.open("wb") as file:
        for _ in range(20):  # ~20 MB
            file.write(block)
        file.write(b"2024-01-01T00:00:01.000+00:00 INFO  the very last old line\n")
    async with console(vault) as (app, pilot, _client):
        log = app.main.query_one(LogPane).main()
        await until(pilot, lambda: any("keeper started" in line for line in log.lines))
        lines = list(log.lines)
        assert len(lines) < 600
        assert any("the very last old line" in line for line in lines)
        assert "01-01 00:00:01" in next(line for line in lines if "very last" in line)


async def test_80x24_shows_every_pane_header_and_key_hints(make_vault, monkeypatch) -> None:
    monkeypatch.setenv("NO_COLOR", "1")
    vault = make_vault(JOBS)
    frozen = datetime(2020, 1, 2, 3, 4, 5, tzinfo=UTC)
    async with console(vault, size=(80, 24), frozen_now=frozen) as (app, pilot, _client):
        await until(pilot, lambda: "RUNNING" in screen_text(app) and "Help" in screen_text(app))
        text = screen_text(app)
        for words in ("1 Jobs", "2 Vault", "3 History", "4 Log", "5 Quota", "today", "? Help"):
            assert words in text, words
        for job in ("quick", "slow", "nightly"):
            assert job in text
        assert "up 0s" in text  # the frozen clock is before the keeper started


# ---- pieces --------------------------------------------------------------------------------


def test_console_that_cannot_attach_to_the_keeper_holding_the_vault_says_why(make_vault) -> None:
    vault = make_vault(JOBS)
    lock = acquire(vault)  # held, with no control socket to attach to
    try:
        # On a terminal (a pty), the bare command opens the console: here it cannot.
        primary, secondary = pty.openpty()
        env = {key: value for key, value in os.environ.items() if key != "WATCHKEEPER_VAULT"}
        result = subprocess.run(
            [str(CLI), "--vault", str(vault)],
            stdin=secondary,
            stdout=secondary,
            stderr=subprocess.PIPE,
            env=env,
            timeout=30,
        )
        os.close(secondary)
        os.close(primary)
    finally:
        lock.release()
    assert result.returncode == 3
    assert result.stderr.decode() == (
        f"watchkeeper: cannot attach: keeper pid {os.getpid()} has no control socket"
        " (an older keeper?)\n"
    )


async def test_cells_updated_in_place_leave_no_dead_renders_behind(make_vault) -> None:
    # DataTable keys its render caches by an update count that update_cell raises: without
    # clearing them, a table updated ten times a second fills them up (memory grows).
    async with console(make_vault(JOBS)) as (app, pilot, _client):
        table = app.main.query_one("#jobs", DataTable)
        for n in range(50):
            table.update_cell("quick", "trigger", Text(str(n)))
            await pilot.pause()
        assert len(table._cell_render_cache) <= 4 * len(table.columns) * (table.row_count + 1)
