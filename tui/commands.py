"""The command palette (ctrl+p): every key of the main screen, each job's own actions
("Run heartbeat", "Pause nightly-report"), one theme picker with our themes, help and
quit. Titles are short; what a command does, and its key, is its help line."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from textual.app import SystemCommand
from textual.binding import Binding
from textual.screen import Screen

from tui.main_screen import MainScreen

if TYPE_CHECKING:
    from tui.app import ConsoleApp

NOT_IN_PALETTE = ("tab", "shift+tab", "1", "2", "3", "4", "5", "enter")


def console_commands(app: ConsoleApp, screen: Screen) -> Iterator[SystemCommand]:
    if isinstance(screen, MainScreen):
        for binding in MainScreen.BINDINGS:
            if not isinstance(binding, Binding) or binding.key in NOT_IN_PALETTE:
                continue
            key = binding.key_display or binding.key
            yield SystemCommand(
                binding.description,
                f"{binding.tooltip} ({key})",
                lambda action=binding.action: screen.run_action(action),
            )
        yield SystemCommand(
            "Log source",
            "Switch the Log between the keeper's log and the selected job's (enter on the Log)",
            screen.action_log_source,
        )
        yield from job_commands(app)
    yield SystemCommand("Theme", "The console's colours (kept in state.toml)", app.pick_theme)
    yield SystemCommand("Help", "Every key on one screen (?)", app.action_help)
    yield SystemCommand("Quit", "Quit; asks first when runs are in flight (q)", app.action_quit)


def job_commands(app: ConsoleApp) -> Iterator[SystemCommand]:
    ops = app.ops
    for name, job in app.model.jobs.items():
        yield SystemCommand(
            f"Run {name}", f"Run {name} now ({job.trigger})", lambda name=name: ops.run_job(name)
        )
        if app.model.is_own_paused(name):
            yield SystemCommand(
                f"Resume {name}",
                f"Resume {name}; shows what would fire first",
                lambda name=name: ops.toggle_pause(name),
            )
        else:
            yield SystemCommand(
                f"Pause {name}",
                f"Pause {name}: no more runs start until it is resumed",
                lambda name=name: ops.toggle_pause(name),
            )
        yield SystemCommand(
            f"Show {name}",
            f"{name}'s config and next fire times",
            lambda name=name: app.open_job(name),
        )
