"""The console at the promised minimum, 80x24, and as terminals grow: what shows, where,
and that nothing moves when the focus does."""

from __future__ import annotations

import os
import pty
import re
import select
import subprocess
import time
from pathlib import Path

import pytest
from conftest import CLI
from conftest import pilot_until as until
from console_kit import console, screen_text
from rich.cells import cell_len
from textual.widgets import DataTable

from watchkeeper.tui.app import ConsoleApp
from watchkeeper.tui.main_screen import PANE_ORDER
from watchkeeper.tui.model import Model
from watchkeeper.tui.text import Clock
from watchkeeper.tui.widgets.header import HeaderBar, short_path

# The newcomer's realistic vault: cron, every, on_files, an `after` chain, a failing job
# with retries, quotas.
REALISTIC = """
[keeper]
max_runs_per_hour = 100
[jobs.heartbeat]
command = ["true"]
every = "1h"
[jobs.nightly-report]
command = ["true"]
cron = "0 3 * * *"
[jobs.vault-watcher]
command = ["true"]
on_files = ["Inbox/*.md"]
every = "30m"
[jobs.task-planner]
command = ["true"]
after = ["vault-watcher"]
[jobs.flaky-sync]
command = ["sh", "-c", "exit 1"]
retries = 2
retry_delay = "1h"
max_per_hour = 10
[jobs.archiver]
command = ["true"]
cron = "*/10 * * * *"
max_per_hour = 6
"""
ALT_SCREEN = b"\x1b[?1049h"
ESCAPES = re.compile(rb"\x1b(\[[0-9;?<>=$]*[ -/]*[@-~]|\][^\x07]*\x07|[=>])")
JOB_NAMES = (
    "heartbeat",
    "nightly-report",
    "vault-watcher",
    "task-planner",
    "flaky-sync",
    "archiver",
)


def regions(app: ConsoleApp) -> dict[str, tuple[int, int, int, int]]:
    return {pane.id or "": tuple(pane.region) for pane in app.main.panes()}  # type: ignore[misc]


async def test_80x24_is_complete_whichever_pane_has_the_focus(make_vault, monkeypatch) -> None:
    monkeypatch.setenv("NO_COLOR", "1")
    vault = make_vault(REALISTIC)
    async with console(vault, size=(80, 24)) as (app, pilot, client):
        run_id = client.run_now("heartbeat")
        # "success", not "success in": the Log wraps at words, and where depends on whether
        # its scrollbar shows yet (on a loaded box the line broke after "success").
        await until(pilot, lambda: "success" in screen_text(app))
        await until(pilot, lambda: run_id in app.main.history_pane.by_id)
        for key in "12345":
            await pilot.press(key)
            await pilot.pause(0.1)
            text = screen_text(app)
            rows = text.splitlines()
            # Every job, with enough of its trigger to read it.
            for name in JOB_NAMES:
                row = next((row for row in rows if f" {name} " in row), None)
                assert row is not None, (key, name, text)
                assert app.model.jobs[name].trigger[:14] in row, (key, name, row)
            # The Log shows the run's outcome (long lines wrap), History its trigger.
            assert "success" in text, key
            assert any(
                " heartbeat " in row and row.rstrip("│┃ ").endswith("manual") for row in rows
            ), text
            # Quotas: the limited scopes' names whole.
            for scope in ("flaky-sync", "archiver"):
                assert f" {scope} " in text, scope


async def test_quota_scope_column_takes_the_room_the_pane_has(make_vault) -> None:
    vault = make_vault(REALISTIC)
    async with console(vault, size=(120, 40)) as (app, pilot, client):
        client.run_now("nightly-report")
        table = app.main.query_one("#quota", DataTable)
        await until(pilot, lambda: "nightly-report" in table.rows)

        def scope_takes_the_rest() -> bool:
            widths = {key.value: column.width for key, column in table.columns.items()}
            room = table.scrollable_content_region.width
            return room > 0 and widths["scope"] == room - widths["used"] - widths["frees"]

        for size in ((80, 24), (160, 48), (120, 40)):
            await pilot.resize_terminal(*size)
            await until(pilot, scope_takes_the_rest)
        assert " nightly-report " in screen_text(app)


@pytest.mark.parametrize("size", [(80, 24), (120, 40)])
async def test_panes_keep_their_size_and_place_when_the_focus_moves(make_vault, size) -> None:
    vault = make_vault(REALISTIC)
    async with console(vault, size=size) as (app, pilot, _client):
        await pilot.pause(0.3)
        before = regions(app)
        for key in ("1", "2", "3", "4", "5", "tab", "tab", "shift+tab", "4", "1"):
            await pilot.press(key)
            await pilot.pause(0.05)
            assert regions(app) == before, key
        # Reading order (top to bottom, left to right) is the pane numbers' and tab's.
        reading = sorted(before, key=lambda pane: (before[pane][1], before[pane][0]))
        assert tuple(reading) == PANE_ORDER
        await pilot.press("1")
        visited = []
        for _ in PANE_ORDER:
            focused = app.main.focused_pane()
            visited.append(focused.id if focused else None)
            await pilot.press("tab")
        assert tuple(visited) == PANE_ORDER


async def test_no_color_marks_the_focused_pane_by_its_border(make_vault, monkeypatch) -> None:
    monkeypatch.setenv("NO_COLOR", "1")
    vault = make_vault(REALISTIC)
    async with console(vault, size=(80, 24)) as (app, pilot, _client):
        names = ("Jobs", "Vault", "History", "Log", "Quota")
        for number, name in enumerate(names, start=1):
            await pilot.press(str(number))
            await pilot.pause(0.1)
            text = screen_text(app)
            heavy = [other for other in names if f"┏━ {names.index(other) + 1} {other}" in text]
            assert heavy == [name], (number, heavy)
            for other in names:
                if other != name:
                    assert f"╭─ {names.index(other) + 1} {other}" in text


def test_header_names_the_vault_at_80_columns_however_much_else_it_says(tmp_path: Path) -> None:
    vault = tmp_path / ("a-very-long-folder-name-" * 3) / "ops-vault"
    model = Model(vault)
    model.state = "RUNNING"
    model.attached_pid = 4242
    model.config_issues = ["watchkeeper.toml:3: command: expected a list"]
    model.today = {"ok": 1234, "failed": 56}
    clock = Clock(tz=__import__("datetime").UTC)
    for width in (80, 100, 160):
        line = HeaderBar.compose_line(model, clock, width).plain
        assert cell_len(line) <= width, width
        assert line.rstrip().endswith("/ops-vault"), line
        assert "ATTACHED pid 4242" in line and "config reload refused" in line
    assert short_path(vault, 12) == "…/ops-vault"
    assert short_path(vault, 5) == "ops-…"


async def test_the_header_shows_the_vault_at_80x24(make_vault) -> None:
    vault = make_vault(REALISTIC, name="the-vault-" + "x" * 80)
    async with console(vault, size=(80, 24)) as (app, pilot, _client):
        await until(pilot, lambda: "RUNNING" in screen_text(app))
        first = screen_text(app).splitlines()[0]
        assert first.rstrip().endswith("/" + vault.name[:40]) or "…" in first.split()[-1]
        assert vault.name[:20] in first


def test_first_run_note_is_said_inside_the_console(tmp_path: Path) -> None:
    """The real command on a terminal, no vault anywhere: it makes the demo vault and the
    console (not only the scrollback it hides) says so."""
    home = tmp_path / "home"
    home.mkdir()
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("WATCHKEEPER_VAULT", "XDG_DATA_HOME", "XDG_CONFIG_HOME", "NO_COLOR")
    }
    env.update(HOME=str(home), TERM="xterm-256color", COLUMNS="100", LINES="30")
    primary, secondary = pty.openpty()
    os.set_blocking(primary, False)
    process = subprocess.Popen(
        [str(CLI)], stdin=secondary, stdout=secondary, stderr=secondary, cwd=home, env=env
    )
    os.close(secondary)
    seen = bytearray()

    def text() -> bytes:
        # The screen is drawn in pieces cut at each widget's edge, each with its style:
        # without the escape sequences, a line's pieces read as the line.
        return ESCAPES.sub(b"", bytes(seen))

    def read_until(wanted: bytes, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while wanted not in text() and time.monotonic() < deadline:
            if select.select([primary], [], [], 0.1)[0]:
                try:
                    seen.extend(os.read(primary, 65536))
                except OSError:
                    return False
        return wanted in text()

    try:
        assert read_until(b"1 Jobs", 30), text()[-2000:]
        # The note printed before the console took the screen is hidden by it: the
        # console itself must say it.
        assert ALT_SCREEN in seen
        del seen[: seen.index(ALT_SCREEN)]
        assert read_until(b"created the demo vault at", 30), text()[-2000:]
    finally:
        quit_console(process, primary)
        os.close(primary)
    assert (home / ".local" / "share" / "watchkeeper" / "vault" / "watchkeeper.toml").exists()


def quit_console(process: subprocess.Popen, terminal: int) -> None:
    """q; s if it asks about runs in flight; the process ends either way."""
    for key in (b"q", b"s", b"q"):
        os.write(terminal, key)
        try:
            process.wait(timeout=3)
            return
        except subprocess.TimeoutExpired:
            continue
    process.kill()
    process.wait()
