"""SVG snapshots of the console (pytest-textual-snapshot), over a real keeper on a vault
whose every pixel is fixed: nothing fires during a test, history and logs are written
beforehand with fixed times, and the console's clock is frozen.

Update the baselines with `pytest tests/test_snapshots.py --snapshot-update`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from conftest import pilot_until as until
from textual.pilot import Pilot
from textual.widgets import DataTable, Input, Static

from watchkeeper.core.client import InProcessClient
from watchkeeper.core.config import load_config
from watchkeeper.core.history import HistoryWriter, RunRecord
from watchkeeper.core.lock import acquire, holder
from watchkeeper.core.vault import ensure_layout
from watchkeeper.tui.app import ConsoleApp, make_app
from watchkeeper.tui.screens.dismiss import DismissScreen
from watchkeeper.tui.screens.help import HelpScreen
from watchkeeper.tui.screens.job_details import JobScreen
from watchkeeper.tui.screens.params import ParamsScreen
from watchkeeper.tui.themes import shipped_dir
from watchkeeper.tui.widgets.history_pane import HistoryPane
from watchkeeper.tui.widgets.log_pane import LogPane

# Before the keeper starts, so the uptime reads "up 0s"; the history below is that day.
FROZEN = datetime(2020, 1, 2, 12, 0, 0, tzinfo=UTC)
# Manual-only jobs, and one cron job whose slot is months away whenever the test runs.
CONFIG = """\
[keeper]
timezone = "UTC"
history_retention_days = 36500  # the fixed history below must outlive the retention sweep

[jobs.fetch-mail]
command = ["python3", "scripts/fetch.py"]
description = "pull new mail into Inbox"

[jobs.summarise]
command = "python3 scripts/summarise.py --once"
timeout = "5m"
retries = 2
params = { day = "today", model = "small", API_KEY = "from-env" }

[jobs.new-year]
command = ["python3", "scripts/report.py"]
cron = "0 3 1 1 *"
"""
RUNS = (
    ("run-0001", "fetch-mail", 9, 0, 0, 1200, "success", 0),
    ("run-0002", "summarise", 9, 5, 0, 48000, "failure", 1),
    ("run-0003", "fetch-mail", 10, 0, 0, 900, "success", 0),
    ("run-0004", "summarise", 10, 5, 0, 300000, "timeout", None),
    ("run-0005", "fetch-mail", 11, 0, 0, 1100, "success", 0),
)
JOB_LOG = "".join(
    f"2020-01-02T{hour:02d}:00:0{second}+00:00 fetched {count} message(s)\n"
    for hour, second, count in ((9, 1, 3), (10, 0, 0), (11, 1, 2))
)


def write_vault(vault: Path) -> Path:
    ensure_layout(vault)
    (vault / "watchkeeper.toml").write_text(CONFIG)
    (vault / "Inbox" / "invoice-march.md").write_text("# Invoice\n\nPlease pay by Friday.\n")
    (vault / "Inbox" / "meeting-notes.md").write_text("# Notes\n")
    (vault / "Plans" / "plan-invoice.md").write_text("# Plan\n")
    (vault / "Done" / "old-task.md").write_text("# Done\n")
    writer = HistoryWriter(vault / "Logs" / "history")
    for run_id, job, hour, minute, second, duration, status, code in RUNS:
        started = datetime(2020, 1, 2, hour, minute, second, tzinfo=UTC)
        writer.append(
            RunRecord(
                id=run_id,
                job=job,
                project="",
                started_at=started,
                completed_at=datetime.fromtimestamp(started.timestamp() + duration / 1000, UTC),
                duration_ms=duration,
                status=status,
                trigger="manual",
                host="snapshot-host",
                exit_code=code,
            )
        )
    writer.close()
    (vault / "Logs" / "jobs").mkdir(parents=True, exist_ok=True)
    (vault / "Logs" / "jobs" / "fetch-mail.log").write_text(JOB_LOG)
    return vault


@pytest.fixture
def console(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[], ConsoleApp]]:
    """Builds the app on a fresh vault of its own; checks afterwards that the keeper
    stopped. The header shows the vault's path: with HOME at the test's own folder it
    reads ~/vault in every run, on every xdist worker."""
    monkeypatch.setenv("HOME", str(tmp_path))
    vault = tmp_path / "vault"
    apps: list[ConsoleApp] = []

    def build() -> ConsoleApp:
        write_vault(vault)
        config = load_config(vault / "watchkeeper.toml")
        app = make_app(
            config,
            InProcessClient(config, acquire(vault)),
            frozen_now=FROZEN,
            theme_dirs=[shipped_dir()],
        )
        apps.append(app)
        return app

    yield build
    for app in apps:
        assert app.closed
    assert holder(vault) is None


async def settled(pilot: Pilot) -> None:
    """Every pane has its data, and the Log pane shows fetch-mail's pre-written log: the
    keeper's own log carries the real start time and pid."""
    app = pilot.app
    assert isinstance(app, ConsoleApp)
    # The auto-pilot starts before the first screen has composed.
    await until(pilot, lambda: app.main is not None and app.main.query("#jobs"))
    jobs = app.main.query_one("#jobs", DataTable)
    history = app.main.query_one(HistoryPane)
    vault = app.main.query_one("#vault", DataTable)
    log = app.main.query_one(LogPane)
    await until(pilot, lambda: app.keeper_started and jobs.row_count == 3)
    await until(pilot, lambda: len(history.by_id) == len(RUNS))
    # The Vault pane lists as many newest items as it has room for.
    await until(pilot, lambda: any((key.value or "").startswith("Inbox/") for key in vault.rows))
    jobs.move_cursor(row=jobs.get_row_index("fetch-mail"))
    await pilot.press("4", "enter", "1")
    await until(pilot, lambda: log.source == "fetch-mail" and log.view.line_count == 3)
    await until(pilot, lambda: not app.model.dirty)
    await pilot.pause(0.3)  # past the next redraw tick


def test_main_screen_80x24(snap_compare, console) -> None:
    assert snap_compare(console(), terminal_size=(80, 24), run_before=settled)


def test_main_screen_120x40(snap_compare, console) -> None:
    assert snap_compare(console(), terminal_size=(120, 40), run_before=settled)


async def help_open(pilot: Pilot) -> None:
    await settled(pilot)
    await pilot.press("question_mark")
    await until(pilot, lambda: isinstance(pilot.app.screen, HelpScreen))
    await pilot.pause(0.2)


def test_help_screen(snap_compare, console) -> None:
    assert snap_compare(console(), terminal_size=(120, 40), run_before=help_open)


def test_help_screen_80x24(snap_compare, console) -> None:
    assert snap_compare(console(), terminal_size=(80, 24), run_before=help_open)


def test_dismiss_form_80x24(snap_compare, console) -> None:
    async def asking(pilot: Pilot) -> None:
        await settled(pilot)
        pilot.app.push_screen(DismissScreen("Needs_Action/renew the certificate.md"))
        await until(pilot, lambda: pilot.app.screen.query("DismissScreen Input"))
        reason = pilot.app.screen.query_one(Input)
        reason.cursor_blink = False  # a blinking cursor is in one frame and not the next
        await pilot.press(*"done last week")
        await pilot.pause(0.2)

    assert snap_compare(console(), terminal_size=(80, 24), run_before=asking)


def test_job_details_of_a_cron_job(snap_compare, console) -> None:
    async def details(pilot: Pilot) -> None:
        await settled(pilot)
        app = pilot.app
        assert isinstance(app, ConsoleApp)
        jobs = app.main.query_one("#jobs", DataTable)
        jobs.move_cursor(row=jobs.get_row_index("new-year"))
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, JobScreen))
        # The next slots come from the frozen clock, so they read the same every year.
        body = app.screen.query_one("#job-body", Static)
        await until(pilot, lambda: not isinstance(body.content, str))  # the config was read
        await until(pilot, lambda: "2021-01-01" in app.export_screenshot())
        await pilot.pause(0.2)

    assert snap_compare(console(), terminal_size=(120, 40), run_before=details)


def test_params_form_80x24(snap_compare, console) -> None:
    async def form_open(pilot: Pilot) -> None:
        await settled(pilot)
        jobs = pilot.app.query_one("#jobs", DataTable)
        jobs.move_cursor(row=jobs.get_row_index("summarise"))
        await pilot.press("R")
        await until(pilot, lambda: isinstance(pilot.app.screen, ParamsScreen))
        await pilot.press("end", "-", "0", "1")  # the first field, changed
        await pilot.pause(0.2)

    assert snap_compare(console(), terminal_size=(80, 24), run_before=form_open)


@pytest.mark.parametrize("theme", sorted(path.stem for path in shipped_dir().glob("*.toml")))
def test_each_shipped_theme(snap_compare, console, theme: str) -> None:
    async def themed(pilot: Pilot) -> None:
        await settled(pilot)
        pilot.app.theme = theme
        await until(pilot, lambda: not pilot.app.model.dirty)  # type: ignore[attr-defined]
        await pilot.pause(0.3)

    assert snap_compare(console(), terminal_size=(120, 40), run_before=themed)
