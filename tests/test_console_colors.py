"""The console at 16 colours and under NO_COLOR, judged by the colour codes of a full
frame of the real app (over a real keeper): every segment the screen is made of, filters
(NO_COLOR) applied, its colours converted as Rich converts them for the colour system
Textual picked for the app's console from the environment when the app was made
(TERM=xterm without COLORTERM: the 16 ANSI colours).

Not the frame's escape text itself: Rich keeps a style's escape codes from the first
colour system it was rendered for, so in a process that rendered the same styles before
(the truecolor snapshot tests) that text would show their codes, not this console's.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import pytest
import textual.constants
from conftest import pilot_until as until
from rich.color import Color
from rich.console import COLOR_SYSTEMS
from rich.style import Style
from textual.pilot import Pilot
from textual.widgets import DataTable

from watchkeeper.core.client import InProcessClient
from watchkeeper.core.config import load_config
from watchkeeper.core.lock import acquire
from watchkeeper.core.state import load_state, save_state
from watchkeeper.tui.app import ConsoleApp, make_app
from watchkeeper.tui.themes import discover, shipped_dir

JOBS = """
[jobs.good]
command = ["true"]
[jobs.broken]
command = ["false"]
[jobs.idle]
command = ["true"]
"""
SHIPPED_THEMES = sorted(theme.name for theme in discover([shipped_dir()])[0])
Colour = int | str | None
"""0-15 (the 16 ANSI colours), None (the terminal's default), or "extended" (a 256-colour
or truecolor code)."""


@dataclass(frozen=True)
class Run:
    """Text written in one style."""

    text: str
    fg: Colour
    bg: Colour
    reverse: bool


def ansi_colour(colour: Color | None, app: ConsoleApp, foreground: bool) -> Colour:
    """The colour as the SGR codes the app's console writes for it, read back."""
    if colour is None:
        return None
    assert app.console.color_system is not None
    system = COLOR_SYSTEMS[app.console.color_system]
    codes = [int(code) for code in colour.downgrade(system).get_ansi_codes(foreground)]
    first = codes[0]
    if first in (38, 48):  # 38;5;n or 38;2;r;g;b
        return "extended"
    if first in (39, 49):
        return None
    base = first - (30 if foreground else 40)
    return base if base < 8 else base - 60 + 8  # 90-97 / 100-107: the bright eight


def frame(app: ConsoleApp) -> list[list[Run]]:
    """The whole screen, one list of runs a row."""
    update = app.screen._compositor.render_update(full=True, screen_stack=app._background_screens)
    rows = []
    for line in cast(Any, update).strips:  # a LayoutUpdate
        runs = []
        for strip in line:
            for text, style, control in strip:
                if control is None:
                    style = style or Style()
                    fg = ansi_colour(style.color, app, foreground=True)
                    bg = ansi_colour(style.bgcolor, app, foreground=False)
                    runs.append(Run(text, fg, bg, bool(style.reverse)))
        rows.append(runs)
    return rows


def row_text(runs: list[Run]) -> str:
    return "".join(run.text for run in runs)


def colours(rows: list[list[Run]]) -> set[int | str]:
    return {
        colour for runs in rows for run in runs for colour in (run.fg, run.bg) if colour is not None
    }


@asynccontextmanager
async def console_with_runs(vault: Path, theme: str) -> AsyncIterator[tuple[ConsoleApp, Pilot]]:
    """The console on `theme` once `good` succeeded and `broken` failed, the cursor on
    `idle` in the focused Jobs pane."""
    state = load_state(vault)
    state.theme = theme
    save_state(vault, state)
    config = load_config(vault / "watchkeeper.toml")
    client = InProcessClient(config, acquire(vault))
    app = make_app(config, client, theme_dirs=[shipped_dir()])
    async with app.run_test(size=(100, 30)) as pilot:
        jobs = app.main.query_one("#jobs", DataTable)
        await until(pilot, lambda: app.keeper_started and jobs.row_count == 3)
        assert app.theme == theme
        client.run_now("good")
        client.run_now("broken")
        jobs.move_cursor(row=jobs.get_row_index("idle"))

        def shown() -> bool:
            text = "\n".join(row_text(runs) for runs in frame(app))
            return "✔ success" in text and "✘ failure" in text and "2 runs/h" in text

        await until(pilot, shown)
        yield app, pilot


def cursor_and_other_row(rows: list[list[Run]]) -> tuple[list[Run], list[Run]]:
    """The Jobs rows of `idle` (under the cursor) and of `good`."""

    def row(job: str) -> list[Run]:
        # The Jobs pane has the focus: its border is the heavy one.
        return next(runs for runs in rows if row_text(runs).startswith(f"┃ {job} "))

    return row("idle"), row("good")


def job_name_run(runs: list[Run], job: str) -> Run:
    return next(run for run in runs if job in run.text)


@pytest.fixture
def sixteen_colours(monkeypatch: pytest.MonkeyPatch) -> None:
    """A terminal that says it has the 16 ANSI colours and no more."""
    monkeypatch.setattr(textual.constants, "COLOR_SYSTEM", "auto")  # TEXTUAL_COLOR_SYSTEM
    monkeypatch.setenv("TERM", "xterm")
    monkeypatch.delenv("COLORTERM", raising=False)
    monkeypatch.delenv("NO_COLOR", raising=False)


@pytest.mark.parametrize("theme", SHIPPED_THEMES)
async def test_16_colours_uses_only_ansi_colours_and_text_stays_readable(
    make_vault, sixteen_colours: None, theme: str
) -> None:
    vault = make_vault(JOBS)
    async with console_with_runs(vault, theme) as (app, _pilot):
        assert app.console.color_system == "standard"
        rows = frame(app)
    used = colours(rows)
    assert "extended" not in used, "a colour beyond the 16 ANSI ones was written"
    assert len(used) >= 3, f"the theme should still show colours, got {used}"
    for runs in rows:
        for run in runs:
            fg, bg = (run.bg, run.fg) if run.reverse else (run.fg, run.bg)
            if run.text.strip() and fg is not None and bg is not None:
                assert fg != bg, f"{run.text!r} is drawn in its background colour {fg}"
    cursor, other = cursor_and_other_row(rows)
    assert job_name_run(cursor, "idle").bg != job_name_run(other, "good").bg, (
        "the cursor row must stand out at 16 colours"
    )


async def test_no_color_writes_no_colour_and_keeps_glyphs_words_and_cursor(
    make_vault, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A truecolor terminal: any colour the console still used would be written.
    monkeypatch.setattr(textual.constants, "COLOR_SYSTEM", "auto")
    monkeypatch.setenv("COLORTERM", "truecolor")
    monkeypatch.setenv("NO_COLOR", "1")
    vault = make_vault(JOBS)
    async with console_with_runs(vault, "watchkeeper-dark") as (app, _pilot):
        assert app.console.color_system == "truecolor"
        rows = frame(app)
    assert colours(rows) == set(), "NO_COLOR: no foreground or background colour"
    text = "\n".join(row_text(runs) for runs in rows)
    for label in ("✔ success", "✘ failure", "● RUNNING"):
        assert label in text, label
    cursor, other = cursor_and_other_row(rows)
    assert job_name_run(cursor, "idle").reverse, "without colour the cursor row is reversed"
    assert not job_name_run(other, "good").reverse
