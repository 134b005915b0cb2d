"""Helpers for the console tests: the real app over a real keeper on a real vault, driven
by Textual's Pilot, and read back as the text an operator sees."""

from __future__ import annotations

import io
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from conftest import pilot_until as until
from rich.console import Console
from textual.pilot import Pilot
from textual.widgets import DataTable

from watchkeeper.core.client import InProcessClient
from watchkeeper.core.config import load_config
from watchkeeper.core.lock import acquire, holder
from watchkeeper.tui.app import ConsoleApp, make_app
from watchkeeper.tui.themes import shipped_dir

JOBS = """
[jobs.quick]
command = ["sh", "-c", "echo hi-from-quick"]
[jobs.slow]
command = ["sleep", "30"]
[jobs.nightly]
command = ["true"]
cron = "0 3 * * *"
"""


def screen_text(app: ConsoleApp) -> str:
    """The whole screen as plain text, as a terminal would show it."""
    width, height = app.size
    console = Console(
        width=width, height=height, file=io.StringIO(), record=True, color_system=None
    )
    console.print(
        app.screen._compositor.render_update(full=True, screen_stack=app._background_screens)
    )
    return console.export_text()


def cell(app: ConsoleApp, row: str, column: str, table: str = "#jobs") -> str:
    """A table cell's text, without the space that separates it from the one before."""
    return str(app.main.query_one(table, DataTable).get_cell(row, column)).strip()


def header(app: ConsoleApp) -> str:
    shown = app.main.header.shown
    return shown.plain if shown is not None else ""


@asynccontextmanager
async def console(
    vault: Path, size: tuple[int, int] = (120, 40), **options: object
) -> AsyncIterator[tuple[ConsoleApp, Pilot, InProcessClient]]:
    """The console owning `vault`, once the keeper runs and every job is listed; on the
    way out, checks the keeper stopped and let go of the vault."""
    config = load_config(vault / "watchkeeper.toml")
    client = InProcessClient(config, acquire(vault))
    options.setdefault("theme_dirs", [shipped_dir()])
    app = make_app(config, client, **options)
    async with app.run_test(size=size) as pilot:
        jobs = app.main.query_one("#jobs", DataTable)
        await until(pilot, lambda: app.keeper_started and jobs.row_count == len(config.jobs))
        yield app, pilot, client
    assert app.closed and holder(vault) is None


async def select_job(pilot: Pilot, app: ConsoleApp, name: str) -> None:
    await pilot.press("1")
    table = app.main.query_one("#jobs", DataTable)
    table.move_cursor(row=table.get_row_index(name))
    await until(pilot, lambda: app.main.jobs_pane.selected == name)


def job_view(client: InProcessClient, name: str) -> dict:
    return next(job for job in client.snapshot()["jobs"] if job["name"] == name)


_LEVEL = re.compile(r"^(\S+) (?:(INFO|WARN|ERROR) +)?(.*)$")


def log_key(line: str) -> str:
    """A keeper-log line as HH:MM:SS, level and message, however the console shortened
    it: the file's ISO stamp becomes its time of day, an INFO level is dropped."""
    match = _LEVEL.match(line.strip())
    if match is None:
        return line.strip()
    stamp, level, rest = match.groups()
    if "T" in stamp:
        stamp = stamp.split("T", 1)[1][:8]
    shown = f"{level} " if level and level != "INFO" else ""
    return f"{stamp} {shown}{rest.strip()}"
