"""Export SVG screenshots of the console for the README: `python -m tui.screenshots [DIR]`.

Drives the real app with Textual's Pilot over a real keeper on a fresh demo vault (the
one `watchkeeper init` writes), so the pictures show what an operator sees: runs
happening, a run's output, the help, the light theme, and the minimum 80x24 size.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from textual.pilot import Pilot
from textual.widgets import DataTable

from core.client import InProcessClient
from core.config import load_config
from core.lock import acquire
from core.scaffold import init_vault
from tui.app import ConsoleApp, make_app
from tui.screens.help import HelpScreen
from tui.screens.run_output import RunOutputScreen
from tui.widgets.history_pane import HistoryPane

DEFAULT_DIR = Path(__file__).resolve().parent.parent / "screenshots"
WAIT = 30.0


async def until(pilot: Pilot, condition: Callable[[], object], timeout: float = WAIT) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"the console did not get there within {timeout}s")
        await pilot.pause(0.05)


def save(app: ConsoleApp, directory: Path, name: str) -> Path:
    path = directory / f"{name}.svg"
    app.save_screenshot(filename=path.name, path=str(directory))
    return path


async def started(pilot: Pilot, app: ConsoleApp) -> DataTable:
    await until(pilot, lambda: app.main is not None and app.main.query("#jobs"))
    jobs = app.main.query_one("#jobs", DataTable)
    await until(pilot, lambda: app.keeper_started and jobs.row_count == len(app.config.jobs))
    return jobs


async def wide_shots(vault: Path, directory: Path) -> list[Path]:
    """Main screen with runs in flight, a run's output, the help, the light theme."""
    config = load_config(vault / "watchkeeper.toml")
    app = make_app(config, InProcessClient(config, acquire(vault)))
    saved: list[Path] = []
    async with app.run_test(size=(120, 40)) as pilot:
        jobs = await started(pilot, app)
        jobs.move_cursor(row=jobs.get_row_index("vault-watcher"))
        await pilot.press("r")
        history = app.main.query_one(HistoryPane)
        # The watcher's success sets off the planner: wait for that chain to show.
        await until(pilot, lambda: len(history.by_id) >= 3)
        await pilot.pause(0.3)
        saved.append(save(app, directory, "console"))

        await pilot.press("3", "enter")
        await until(pilot, lambda: isinstance(app.screen, RunOutputScreen))
        await pilot.pause(0.5)
        saved.append(save(app, directory, "run-details"))
        await pilot.press("escape")
        await until(pilot, lambda: app.screen is app.main)

        await pilot.press("1", "question_mark")
        await until(pilot, lambda: isinstance(app.screen, HelpScreen))
        await pilot.pause(0.2)
        saved.append(save(app, directory, "help"))
        await pilot.press("escape")
        await until(pilot, lambda: app.screen is app.main)

        app.theme = "watchkeeper-light"
        await pilot.pause(0.5)
        saved.append(save(app, directory, "theme-light"))
        app.theme = "watchkeeper-dark"  # the vault is thrown away, but keep the default
    return saved


async def narrow_shot(vault: Path, directory: Path) -> Path:
    config = load_config(vault / "watchkeeper.toml")
    app = make_app(config, InProcessClient(config, acquire(vault)))
    async with app.run_test(size=(80, 24)) as pilot:
        await started(pilot, app)
        await until(pilot, lambda: len(app.main.query_one(HistoryPane).by_id) >= 1)
        await pilot.pause(0.3)
        return save(app, directory, "console-80x24")


async def export(directory: Path) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="watchkeeper-demo-") as temp:
        vault = Path(temp) / "vault"
        init_vault(vault)
        saved = await wide_shots(vault, directory)
        saved.append(await narrow_shot(vault, directory))
    return saved


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    directory = Path(args[0]) if args else DEFAULT_DIR
    for path in asyncio.run(export(directory)):
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
