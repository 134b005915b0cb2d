"""Export SVG screenshots of the console for the README:
`python -m watchkeeper.tui.screenshots [DIR]`.

Drives the real app with Textual's Pilot over a real keeper on a fresh demo vault (the
one `watchkeeper init` writes), so the pictures show what an operator sees: the demo's
notes on their way from Inbox to Plans with a run in flight, a run's output, the help,
the light theme, and the minimum 80x24 size.
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from textual.pilot import Pilot

from watchkeeper.core.client import InProcessClient
from watchkeeper.core.config import load_config
from watchkeeper.core.lock import acquire
from watchkeeper.core.scaffold import init_vault
from watchkeeper.tui.app import ConsoleApp, make_app
from watchkeeper.tui.screens.help import HelpScreen
from watchkeeper.tui.screens.quit import QuitScreen
from watchkeeper.tui.screens.run_output import RunOutputScreen

DEFAULT_DIR = Path(__file__).resolve().parent.parent / "screenshots"
WAIT = 90.0
"""The demo drops a sample note every 20 seconds: time for one to come and flow."""


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


def open_app(vault: Path) -> ConsoleApp:
    config = load_config(vault / "watchkeeper.toml")
    return make_app(config, InProcessClient(config, acquire(vault)))


async def started(pilot: Pilot, app: ConsoleApp) -> None:
    await until(pilot, lambda: app.main is not None and app.main.query("#jobs"))
    jobs = app.main.jobs_pane.table
    await until(pilot, lambda: app.keeper_started and jobs.row_count == len(app.config.jobs))


def in_flight(app: ConsoleApp, runs: int) -> bool:
    """A note on its way (in Inbox or Needs_Action) while a run moves it, and at least
    `runs` runs in History."""
    folders = app.model.folders
    waiting = sum(folders.get(name, (0, ()))[0] for name in ("Inbox", "Needs_Action"))
    running = {name for name, job in app.model.jobs.items() if job.running}
    return (
        waiting > 0
        and bool(running & {"vault-watcher", "task-planner"})
        and len(app.main.history_pane.by_id) >= runs
    )


async def wide_shots(vault: Path, directory: Path) -> list[Path]:
    """Main screen with a note in flight, a run's output, the help, the light theme."""
    app = open_app(vault)
    saved: list[Path] = []
    async with app.run_test(size=(120, 40)) as pilot:
        await started(pilot, app)
        # Past Welcome.md's flow: a sample note dropped by the demo, on its way.
        await until(pilot, lambda: in_flight(app, 4))
        await pilot.pause(0.3)
        saved.append(save(app, directory, "console"))

        history = app.main.history_pane
        planned = next(
            run_id
            for run_id, record in history.by_id.items()
            if record.get("taskId") == "task-planner" and record.get("status") == "success"
        )
        await pilot.press("3")
        history.table.move_to_key(planned)
        await pilot.press("enter")
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
        await leave(pilot, app)
    return saved


async def leave(pilot: Pilot, app: ConsoleApp) -> None:
    """Quit as an operator would, letting runs in flight finish: the next pictures
    must not show them cancelled."""
    await pilot.press("q")
    await pilot.pause(0.2)
    if isinstance(app.screen, QuitScreen):
        await pilot.press("w")
    await until(pilot, lambda: app.closed)


async def narrow_shot(vault: Path, directory: Path) -> Path:
    app = open_app(vault)
    async with app.run_test(size=(80, 24)) as pilot:
        await started(pilot, app)
        await until(pilot, lambda: in_flight(app, 1))
        await pilot.pause(0.3)
        return save(app, directory, "console-80x24")


async def export(directory: Path) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="watchkeeper-demo-") as temp:
        # The header shows the vault from the home folder: ~/vault, as on a desk.
        home = os.environ.get("HOME")
        os.environ["HOME"] = temp
        try:
            vault = Path(temp) / "vault"
            init_vault(vault)
            saved = await wide_shots(vault, directory)
            saved.append(await narrow_shot(vault, directory))
        finally:
            if home is None:
                os.environ.pop("HOME", None)
            else:
                os.environ["HOME"] = home
    return saved


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    directory = Path(args[0]) if args else DEFAULT_DIR
    for path in asyncio.run(export(directory)):
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
